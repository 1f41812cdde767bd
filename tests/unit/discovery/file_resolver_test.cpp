// discovery/file_resolver on a real temporary folder with inotify, on one io_context like the control
// loop: the first set arrives with start(), atomic replacement and in-place rewrites are picked up
// promptly, and a malformed, half-written or deleted file keeps the last good set.

#include "discovery/file_resolver.hpp"

#include <gtest/gtest.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <functional>

namespace drover::discovery {
namespace {

using namespace std::chrono_literals;
namespace asio = boost::asio;

bool run_until(asio::io_context& io, const std::function<bool()>& done, std::chrono::milliseconds timeout) {
    const auto deadline = std::chrono::steady_clock::now() + timeout;
    while (!done()) {
        if (std::chrono::steady_clock::now() >= deadline) { return false; }
        if (io.stopped()) { io.restart(); }
        io.run_one_for(10ms);
    }
    return true;
}

std::string text(const EndpointSet& set) {
    std::string out;
    for (const auto& e : set) {
        if (!out.empty()) { out += ' '; }
        out += to_string(e.address);
        if (e.weight != 1) { out += "/w" + std::to_string(e.weight); }
    }
    return out;
}

class FileResolverTest : public ::testing::Test {
protected:
    void SetUp() override {
        dir_ = std::filesystem::temp_directory_path() /
               ("drover-file-resolver-" + std::to_string(::getpid()) + "-" +
                ::testing::UnitTest::GetInstance()->current_test_info()->name());
        std::filesystem::remove_all(dir_);
        std::filesystem::create_directories(dir_);
        path_ = (dir_ / "endpoints.yaml").string();
    }
    void TearDown() override {
        resolver.reset();
        std::filesystem::remove_all(dir_);
    }

    // Written in place: open, truncate, write, close (one IN_CLOSE_WRITE).
    void write_in_place(const std::string& content, const std::string& path = {}) {
        std::ofstream{path.empty() ? path_ : path, std::ios::trunc} << content;
    }
    // The way orchestrators publish: write a temporary file, then rename it over the real one.
    void replace_atomically(const std::string& content) {
        const auto tmp = (dir_ / ".endpoints.yaml.tmp").string();
        std::ofstream{tmp, std::ios::trunc} << content;
        std::filesystem::rename(tmp, path_);
    }

    void start(std::string path = {}) {
        resolver =
            std::make_unique<FileResolver>(io, "test", config::FileDiscovery{path.empty() ? path_ : path});
        resolver->start([this](EndpointSet set) { updates.push_back(std::move(set)); });
    }

    bool wait_updates(std::size_t n, std::chrono::milliseconds timeout = 1s) {
        return run_until(io, [&] { return updates.size() >= n; }, timeout);
    }
    bool wait_failures(std::uint64_t n, std::chrono::milliseconds timeout = 1s) {
        return run_until(io, [&] { return resolver->status().failures >= n; }, timeout);
    }

    std::filesystem::path dir_;
    std::string path_;
    asio::io_context io{1};
    std::unique_ptr<FileResolver> resolver;
    std::vector<EndpointSet> updates;
};

TEST_F(FileResolverTest, FirstSetIsDeliveredByStart) {
    write_in_place("endpoints:\n  - 127.0.0.3:80\n  - { address: 127.0.0.2:80, weight: 3 }\n");
    start();
    ASSERT_EQ(updates.size(), 1u);   // before the loop ever ran
    EXPECT_EQ(text(updates[0]), "127.0.0.2:80/w3 127.0.0.3:80");
    const auto s = resolver->status();
    EXPECT_EQ(s.kind, "file");
    EXPECT_TRUE(s.resolved);
    EXPECT_FALSE(s.stale);
    EXPECT_EQ(s.successes, 1u);
}

TEST_F(FileResolverTest, AtomicReplacementIsPickedUpWellWithinASecond) {
    write_in_place("endpoints: [127.0.0.2:80]\n");
    start();
    const auto before = std::chrono::steady_clock::now();
    replace_atomically("endpoints: [127.0.0.2:80, 127.0.0.3:80]\n");
    ASSERT_TRUE(wait_updates(2, 500ms));
    EXPECT_LT(std::chrono::steady_clock::now() - before, 500ms);
    EXPECT_EQ(text(updates[1]), "127.0.0.2:80 127.0.0.3:80");
    replace_atomically("endpoints: [127.0.0.3:80]\n");
    ASSERT_TRUE(wait_updates(3, 500ms));
    EXPECT_EQ(text(updates[2]), "127.0.0.3:80");
}

TEST_F(FileResolverTest, InPlaceRewriteIsPickedUp) {
    write_in_place("endpoints: [127.0.0.2:80]\n");
    start();
    write_in_place("endpoints: [127.0.0.4:80]\n");
    ASSERT_TRUE(wait_updates(2, 500ms));
    EXPECT_EQ(text(updates[1]), "127.0.0.4:80");
}

// A rewrite closed, and the next one begun (truncated, part written) before the resolver looks: both
// come in one burst of events, and the file is read when the second closes, not half-written
// (soak audit: "empty endpoints file" under load).
TEST_F(FileResolverTest, ARewriteBegunRightAfterAnotherIsReadWhenItCloses) {
    write_in_place("endpoints: [127.0.0.2:80]\n");
    start();
    write_in_place("endpoints: [127.0.0.3:80]\n");
    std::ofstream next{path_, std::ios::trunc};
    next << "endpoints:\n  - 127.0.0.4:80\n  - 127.0.0." << std::flush;
    run_until(io, [] { return false; }, 300ms);
    EXPECT_EQ(resolver->status().failures, 0u);
    EXPECT_EQ(updates.size(), 1u);
    next << "5:80\n";
    next.close();
    ASSERT_TRUE(wait_updates(2));
    EXPECT_EQ(text(updates[1]), "127.0.0.4:80 127.0.0.5:80");
    EXPECT_EQ(resolver->status().failures, 0u);
}

TEST_F(FileResolverTest, UnchangedContentDeliversNothing) {
    write_in_place("endpoints: [127.0.0.2:80]\n");
    start();
    replace_atomically("endpoints:\n  - 127.0.0.2:80\n");   // same set, other spelling
    ASSERT_TRUE(run_until(io, [&] { return resolver->status().successes >= 2; }, 1s));
    EXPECT_EQ(updates.size(), 1u);
}

TEST_F(FileResolverTest, HalfWrittenFileKeepsTheLastSetAndNamesTheLine) {
    write_in_place("endpoints: [127.0.0.2:80]\n");
    start();
    write_in_place("endpoints:\n  - 127.0.0.5:80\n  - { address: 127.0.0.6:8");
    ASSERT_TRUE(wait_failures(1));
    EXPECT_EQ(updates.size(), 1u);
    auto s = resolver->status();
    EXPECT_TRUE(s.stale);
    EXPECT_EQ(s.consecutive_failures, 1u);
    EXPECT_EQ(s.last_error.rfind(path_ + ":3:", 0), 0u) << s.last_error;   // file:line first
    // The writer finishes: the complete file is loaded.
    write_in_place("endpoints:\n  - 127.0.0.5:80\n  - { address: 127.0.0.6:80 }\n");
    ASSERT_TRUE(wait_updates(2));
    EXPECT_EQ(text(updates[1]), "127.0.0.5:80 127.0.0.6:80");
    s = resolver->status();
    EXPECT_FALSE(s.stale);
    EXPECT_EQ(s.consecutive_failures, 0u);
}

TEST_F(FileResolverTest, InvalidEntriesKeepTheLastSet) {
    write_in_place("endpoints: [127.0.0.2:80]\n");
    start();
    replace_atomically("endpoints: [127.0.0.2:80, db.internal:80]\n");
    ASSERT_TRUE(wait_failures(1));
    EXPECT_EQ(updates.size(), 1u);
    EXPECT_NE(resolver->status().last_error.find("must be an IP address"), std::string::npos);
    replace_atomically("");   // truncated to nothing
    ASSERT_TRUE(wait_failures(2));
    EXPECT_EQ(updates.size(), 1u);
    EXPECT_NE(resolver->status().last_error.find("empty endpoints file"), std::string::npos);
}

TEST_F(FileResolverTest, DeletedFileKeepsTheLastSetAndItsReturnIsLoaded) {
    write_in_place("endpoints: [127.0.0.2:80]\n");
    start();
    std::filesystem::remove(path_);
    ASSERT_TRUE(wait_failures(1));
    EXPECT_EQ(updates.size(), 1u);
    auto s = resolver->status();
    EXPECT_TRUE(s.stale);
    EXPECT_NE(s.last_error.find("file not found"), std::string::npos) << s.last_error;
    // No more failures pile up while it stays deleted.
    io.restart();
    io.run_for(100ms);
    EXPECT_EQ(resolver->status().failures, 1u);
    replace_atomically("endpoints: [127.0.0.7:80]\n");
    ASSERT_TRUE(wait_updates(2));
    EXPECT_EQ(text(updates[1]), "127.0.0.7:80");
    EXPECT_FALSE(resolver->status().stale);
}

TEST_F(FileResolverTest, FileMissingAtStartIsUnresolvedUntilItAppears) {
    start();
    EXPECT_TRUE(updates.empty());
    auto s = resolver->status();
    EXPECT_FALSE(s.resolved);
    EXPECT_FALSE(s.stale);
    EXPECT_EQ(s.failures, 1u);
    replace_atomically("endpoints: [127.0.0.2:80]\n");
    ASSERT_TRUE(wait_updates(1));
    EXPECT_TRUE(resolver->status().resolved);
}

TEST_F(FileResolverTest, FolderMissingAtStartIsWatchedOnceItExists) {
    const auto folder = dir_ / "later";
    const auto path = (folder / "endpoints.yaml").string();
    start(path);
    EXPECT_TRUE(updates.empty());
    std::filesystem::create_directories(folder);
    write_in_place("endpoints: [127.0.0.2:80]\n", path);
    ASSERT_TRUE(wait_updates(1, 5s));   // found by the periodic check (every 2 s)
    // From then on inotify watches the folder: changes are prompt again.
    write_in_place("endpoints: [127.0.0.3:80]\n", path);
    ASSERT_TRUE(wait_updates(2, 500ms));
}

TEST_F(FileResolverTest, StopEndsTheWatch) {
    write_in_place("endpoints: [127.0.0.2:80]\n");
    start();
    resolver->stop();
    replace_atomically("endpoints: [127.0.0.3:80]\n");
    io.restart();
    io.run_for(200ms);
    EXPECT_EQ(updates.size(), 1u);
    resolver.reset();
    io.restart();
    io.run_for(50ms);
}

}  // namespace
}  // namespace drover::discovery
