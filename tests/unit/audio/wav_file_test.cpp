// The file side of WAV I/O: what write_wav does to each kind of output path (regular file,
// symlink, FIFO, device, directory) and how read_wav refuses inputs that are not regular files
// without blocking.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <future>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "audio/wav.h"
#include "util/test_paths.h"

namespace fs = std::filesystem;

namespace voxrt::audio {
namespace {

std::vector<float> tone() {
    std::vector<float> x(240);
    for (size_t i = 0; i < x.size(); ++i) x[i] = 0.25f * static_cast<float>(i % 17) / 17.0f;
    return x;
}

std::string slurp(const std::string& path) {
    std::ifstream in(path, std::ios::binary);
    std::stringstream ss;
    ss << in.rdbuf();
    return ss.str();
}

// The bytes write_wav produces for tone(), from a plain new file.
std::string reference_bytes() {
    const std::string p = test::make_temp_dir("wavref") + "/ref.wav";
    const std::vector<float> x = tone();
    EXPECT_TRUE(write_wav(p, x.data(), x.size(), 24000).is_ok());
    return slurp(p);
}

Status write_tone(const std::string& path) {
    const std::vector<float> x = tone();
    return write_wav(path, x.data(), x.size(), 24000);
}

// Names in dir other than the ones given (temporary files left behind would show here).
std::vector<std::string> others(const std::string& dir, std::vector<std::string> expected) {
    std::vector<std::string> out;
    for (const auto& e : fs::directory_iterator(dir)) {
        const std::string n = e.path().filename().string();
        bool known = false;
        for (const auto& x : expected) known |= n == x;
        if (!known) out.push_back(n);
    }
    return out;
}

mode_t mode_of(const std::string& p) {
    struct stat st {};
    EXPECT_EQ(::stat(p.c_str(), &st), 0) << p;
    return st.st_mode;
}

TEST(WavWriter, NewFileGetsTheUmaskDefault) {
    const mode_t old = ::umask(022);
    const std::string dir = test::make_temp_dir("wavnew");
    ASSERT_TRUE(write_tone(dir + "/out.wav").is_ok());
    ::umask(old);
    EXPECT_EQ(slurp(dir + "/out.wav"), reference_bytes());
    EXPECT_EQ(mode_of(dir + "/out.wav") & 07777, 0644u);
    EXPECT_TRUE(others(dir, {"out.wav"}).empty());
}

TEST(WavWriter, RegularFileIsReplacedAtomicallyKeepingItsPermissionBitsOnly) {
    const std::string dir = test::make_temp_dir("wavreplace");
    const std::string p = dir + "/out.wav";
    std::ofstream(p) << "old contents that are longer than nothing";
    ASSERT_EQ(::chmod(p.c_str(), 04750), 0);  // set-user-id must not carry over
    struct stat before {};
    ASSERT_EQ(::stat(p.c_str(), &before), 0);
    ASSERT_TRUE(write_tone(p).is_ok());
    struct stat after {};
    ASSERT_EQ(::lstat(p.c_str(), &after), 0);
    EXPECT_TRUE(S_ISREG(after.st_mode));
    EXPECT_NE(before.st_ino, after.st_ino) << "expected a new file renamed into place";
    EXPECT_EQ(after.st_mode & 07777, 0750u);
    EXPECT_EQ(slurp(p), reference_bytes());
    EXPECT_TRUE(others(dir, {"out.wav"}).empty());
}

TEST(WavWriter, SymlinkStaysAndItsTargetIsWritten) {
    const std::string dir = test::make_temp_dir("wavlink");
    fs::create_directory(dir + "/real");
    std::ofstream(dir + "/real/target.wav") << "old";
    fs::create_symlink("real/target.wav", dir + "/link1.wav");   // relative
    fs::create_symlink(dir + "/link1.wav", dir + "/link2.wav");  // a chain
    ASSERT_TRUE(write_tone(dir + "/link2.wav").is_ok());
    EXPECT_TRUE(fs::is_symlink(dir + "/link1.wav"));
    EXPECT_TRUE(fs::is_symlink(dir + "/link2.wav"));
    EXPECT_EQ(fs::read_symlink(dir + "/link2.wav"), dir + "/link1.wav");
    EXPECT_EQ(slurp(dir + "/real/target.wav"), reference_bytes());
    EXPECT_TRUE(others(dir + "/real", {"target.wav"}).empty());
    EXPECT_TRUE(others(dir, {"real", "link1.wav", "link2.wav"}).empty());
}

TEST(WavWriter, DanglingSymlinkCreatesItsTarget) {
    const std::string dir = test::make_temp_dir("wavdangling");
    fs::create_symlink("made.wav", dir + "/link.wav");
    ASSERT_TRUE(write_tone(dir + "/link.wav").is_ok());
    EXPECT_TRUE(fs::is_symlink(dir + "/link.wav"));
    EXPECT_EQ(slurp(dir + "/made.wav"), reference_bytes());
}

TEST(WavWriter, FifoIsWrittenThroughNotReplaced) {
    const std::string dir = test::make_temp_dir("wavfifo");
    const std::string p = dir + "/pipe";
    ASSERT_EQ(::mkfifo(p.c_str(), 0600), 0);
    // The reading end is opened first (non-blocking), so the writer's open returns at once and
    // the WAV (far smaller than a pipe buffer) waits in the pipe: no thread, and no hang if the
    // path were replaced instead (the read would then just find nothing).
    const int rd = ::open(p.c_str(), O_RDONLY | O_NONBLOCK);
    ASSERT_GE(rd, 0);
    EXPECT_TRUE(write_tone(p).is_ok());
    std::string got;
    char buf[4096];
    for (ssize_t n; (n = ::read(rd, buf, sizeof buf)) > 0;) got.append(buf, static_cast<size_t>(n));
    ::close(rd);
    EXPECT_EQ(got, reference_bytes());
    EXPECT_TRUE(S_ISFIFO(mode_of(p)));
    EXPECT_TRUE(others(dir, {"pipe"}).empty());
}

TEST(WavWriter, DevNullIsWrittenThroughNotReplaced) {
    ASSERT_TRUE(S_ISCHR(mode_of("/dev/null")));
    ASSERT_TRUE(write_tone("/dev/null").is_ok());
    EXPECT_TRUE(S_ISCHR(mode_of("/dev/null")));
    // A symlink to a device is written through as well.
    const std::string dir = test::make_temp_dir("wavdevlink");
    fs::create_symlink("/dev/null", dir + "/null.wav");
    ASSERT_TRUE(write_tone(dir + "/null.wav").is_ok());
    EXPECT_TRUE(fs::is_symlink(dir + "/null.wav"));
    EXPECT_TRUE(S_ISCHR(mode_of("/dev/null")));
}

TEST(WavWriter, RefusesDirectoriesEmptyPathsAndLoops) {
    const std::string dir = test::make_temp_dir("wavdir");
    Status st = write_tone(dir);
    ASSERT_FALSE(st.is_ok());
    EXPECT_NE(st.message().find(dir + ": is a directory"), std::string::npos) << st.message();
    EXPECT_TRUE(fs::is_directory(dir));

    st = write_tone("");
    ASSERT_FALSE(st.is_ok());
    EXPECT_EQ(st.code(), StatusCode::kInvalidArgument);

    fs::create_symlink("b", dir + "/a");
    fs::create_symlink("a", dir + "/b");
    st = write_tone(dir + "/a");
    ASSERT_FALSE(st.is_ok());
    EXPECT_NE(st.message().find("Too many levels of symbolic links"), std::string::npos)
        << st.message();
    EXPECT_TRUE(fs::is_symlink(dir + "/a"));

    st = write_tone(dir + "/missing/out.wav");
    ASSERT_FALSE(st.is_ok());
    EXPECT_EQ(st.code(), StatusCode::kNotFound) << st.message();
    EXPECT_NE(st.message().find(dir + "/missing/out.wav"), std::string::npos) << st.message();
}

// Runs read_wav(path) with a deadline; if it blocks on a FIFO, a writer is attached and closed
// so that the call returns and the test fails instead of hanging.
Expected<Pcm> read_with_deadline(const std::string& path, bool* blocked) {
    auto f = std::async(std::launch::async, [&] { return read_wav(path); });
    *blocked = f.wait_for(std::chrono::seconds(10)) != std::future_status::ready;
    if (*blocked) {
        const int fd = ::open(path.c_str(), O_WRONLY | O_NONBLOCK);
        if (fd >= 0) ::close(fd);
    }
    return f.get();
}

TEST(WavReader, RefusesWhatIsNotARegularFileWithoutBlocking) {
    const std::string dir = test::make_temp_dir("wavin");
    const std::string fifo = dir + "/in.wav";
    ASSERT_EQ(::mkfifo(fifo.c_str(), 0600), 0);
    bool blocked = false;
    Expected<Pcm> r = read_with_deadline(fifo, &blocked);
    EXPECT_FALSE(blocked) << "read_wav blocked on a FIFO nobody writes";
    ASSERT_FALSE(r.is_ok());
    EXPECT_EQ(r.status().code(), StatusCode::kInvalidFile);
    EXPECT_NE(r.status().message().find(fifo + ": is a FIFO, not a regular file"),
              std::string::npos)
        << r.status().message();

    r = read_wav(dir);
    ASSERT_FALSE(r.is_ok());
    EXPECT_NE(r.status().message().find("is a directory"), std::string::npos)
        << r.status().message();
    r = read_wav("/dev/null");
    ASSERT_FALSE(r.is_ok());
    EXPECT_NE(r.status().message().find("is a character device"), std::string::npos)
        << r.status().message();
}

TEST(WavReader, ReportsTheRealReasonAFileCannotBeOpened) {
    const std::string dir = test::make_temp_dir("wavwhy");
    fs::create_symlink("y", dir + "/x");
    fs::create_symlink("x", dir + "/y");
    Expected<Pcm> r = read_wav(dir + "/x");
    ASSERT_FALSE(r.is_ok());
    EXPECT_EQ(r.status().code(), StatusCode::kInvalidFile);
    EXPECT_NE(r.status().message().find("Too many levels of symbolic links"), std::string::npos)
        << r.status().message();
    r = read_wav(dir + "/none.wav");
    ASSERT_FALSE(r.is_ok());
    EXPECT_EQ(r.status().code(), StatusCode::kNotFound);
    EXPECT_NE(r.status().message().find("No such file or directory"), std::string::npos)
        << r.status().message();
}

}  // namespace
}  // namespace voxrt::audio
