// voxrt-kprof (bench tooling): GPU kernel time by kernel name for any CUDA program, without a
// profiler GUI.
//
// A CUDA injection library: the driver loads it into the process named by CUDA_INJECTION64_PATH
// and calls InitializeInjection(), which turns on CUPTI's kernel activity records. At exit it
// prints, per kernel name, the launches, the total and mean GPU time and the share of all kernel
// time, largest first, to stderr (or to the file in VOXRT_KPROF_OUT):
//
//   CUDA_INJECTION64_PATH=build/libvoxrt_kprof.so voxrt bench --sessions 64 ...
//
// Kernels of all streams count (a batch's step and the sessions' detokenizers alike); the span
// from the first kernel's start to the last kernel's end is printed next to the summed kernel
// time, so the gaps between kernels (launch overhead, host work) show too.
#include <cupti.h>

#include <cxxabi.h>

#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <map>
#include <mutex>
#include <string>
#include <vector>

namespace {

struct Totals {
    uint64_t launches = 0;
    uint64_t ns = 0;
};

std::mutex g_mu;
std::map<std::string, Totals>* g_by_name = nullptr;
uint64_t g_first = UINT64_MAX, g_last = 0, g_dropped = 0;
bool g_on = false;

constexpr size_t kBufferBytes = size_t{8} << 20;

std::string short_name(const char* mangled) {
    if (!mangled) return "?";
    int status = 0;
    char* d = abi::__cxa_demangle(mangled, nullptr, nullptr, &status);
    std::string s = (status == 0 && d) ? d : mangled;
    std::free(d);
    // Anonymous namespaces would end the name at their parenthesis below: drop them.
    for (size_t at; (at = s.find("(anonymous namespace)::")) != std::string::npos;) s.erase(at, 23);
    // Drop the argument list; keep the template arguments (they name the variant).
    int depth = 0;
    for (size_t i = 0; i < s.size(); ++i) {
        if (s[i] == '<') ++depth;
        if (s[i] == '>') --depth;
        if (s[i] == '(' && depth == 0) {
            s.resize(i);
            break;
        }
    }
    if (s.size() > 110) s = s.substr(0, 107) + "...";
    return s;
}

void CUPTIAPI buffer_requested(uint8_t** buffer, size_t* size, size_t* max_records) {
    *buffer = static_cast<uint8_t*>(std::aligned_alloc(8, kBufferBytes));
    *size = *buffer ? kBufferBytes : 0;
    *max_records = 0;
}

void CUPTIAPI buffer_completed(CUcontext, uint32_t, uint8_t* buffer, size_t, size_t valid) {
    CUpti_Activity* rec = nullptr;
    std::lock_guard<std::mutex> lock(g_mu);
    while (cuptiActivityGetNextRecord(buffer, valid, &rec) == CUPTI_SUCCESS) {
        if (rec->kind != CUPTI_ACTIVITY_KIND_CONCURRENT_KERNEL &&
            rec->kind != CUPTI_ACTIVITY_KIND_KERNEL)
            continue;
        const auto* k = reinterpret_cast<const CUpti_ActivityKernel10*>(rec);
        Totals& t = (*g_by_name)[short_name(k->name)];
        ++t.launches;
        t.ns += k->end - k->start;
        g_first = std::min<uint64_t>(g_first, k->start);
        g_last = std::max<uint64_t>(g_last, k->end);
    }
    size_t dropped = 0;
    if (cuptiActivityGetNumDroppedRecords(nullptr, 0, &dropped) == CUPTI_SUCCESS)
        g_dropped += dropped;
    std::free(buffer);
}

void report() {
    if (!g_on) return;
    cuptiActivityFlushAll(1);
    std::lock_guard<std::mutex> lock(g_mu);
    std::vector<std::pair<std::string, Totals>> rows(g_by_name->begin(), g_by_name->end());
    std::sort(rows.begin(), rows.end(),
              [](const auto& a, const auto& b) { return a.second.ns > b.second.ns; });
    uint64_t total = 0, launches = 0;
    for (const auto& r : rows) {
        total += r.second.ns;
        launches += r.second.launches;
    }
    FILE* out = stderr;
    const char* path = std::getenv("VOXRT_KPROF_OUT");
    if (path && *path) {
        if (FILE* f = std::fopen(path, "w")) out = f;
    }
    const double span = g_last > g_first ? (g_last - g_first) / 1e6 : 0.0;
    std::fprintf(out,
                 "[kprof] %llu kernel launches, %.1f ms of kernel time over a %.1f ms span"
                 "%s\n",
                 static_cast<unsigned long long>(launches), total / 1e6, span,
                 g_dropped ? " (some records dropped)" : "");
    std::fprintf(out, "[kprof] %9s %10s %9s %6s  %s\n", "launches", "total ms", "mean us", "share",
                 "kernel");
    const size_t top = std::min<size_t>(rows.size(), 45);
    for (size_t i = 0; i < top; ++i) {
        const Totals& t = rows[i].second;
        std::fprintf(out, "[kprof] %9llu %10.2f %9.2f %5.1f%%  %s\n",
                     static_cast<unsigned long long>(t.launches), t.ns / 1e6,
                     t.ns / 1e3 / static_cast<double>(t.launches),
                     total ? 100.0 * t.ns / total : 0.0, rows[i].first.c_str());
    }
    if (out != stderr) std::fclose(out);
}

}  // namespace

extern "C" int InitializeInjection(void) {
    g_by_name = new std::map<std::string, Totals>();
    if (cuptiActivityRegisterCallbacks(buffer_requested, buffer_completed) != CUPTI_SUCCESS ||
        cuptiActivityEnable(CUPTI_ACTIVITY_KIND_CONCURRENT_KERNEL) != CUPTI_SUCCESS) {
        std::fprintf(stderr, "[kprof] CUPTI activity tracing could not be enabled\n");
        return 1;
    }
    cuptiActivityFlushPeriod(200);  // ms: records arrive while the program runs
    g_on = true;
    std::atexit(report);
    return 1;
}
