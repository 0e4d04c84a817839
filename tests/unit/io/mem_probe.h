// Resident memory of this process, for tests that bound what loading an input may take.
#pragma once

#include <fstream>
#include <string>

namespace voxrt::test {

// True under AddressSanitizer, whose shadow memory and quarantine make resident sizes meaningless
// as bounds (tests then still run, without the bound).
#if defined(__SANITIZE_ADDRESS__)
inline constexpr bool kUnderAsan = true;
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
inline constexpr bool kUnderAsan = true;
#else
inline constexpr bool kUnderAsan = false;
#endif
#else
inline constexpr bool kUnderAsan = false;
#endif

// A field of /proc/self/status in KiB ("VmRSS", "VmHWM"), or -1.
inline long proc_status_kib(const std::string& field) {
    std::ifstream f("/proc/self/status");
    std::string line;
    while (std::getline(f, line))
        if (line.compare(0, field.size() + 1, field + ":") == 0)
            return std::stol(line.substr(field.size() + 1));
    return -1;
}

// Resets the peak resident size (VmHWM) to the current one; false if the kernel does not allow it.
inline bool reset_peak_rss() {
    std::ofstream f("/proc/self/clear_refs");
    f << "5";
    f.flush();
    return static_cast<bool>(f) && proc_status_kib("VmHWM") >= 0;
}

// The peak resident size since the last reset_peak_rss(), in KiB.
inline long peak_rss_kib() {
    return proc_status_kib("VmHWM");
}
inline long rss_kib() {
    return proc_status_kib("VmRSS");
}

}  // namespace voxrt::test
