#include "proxy/pipe.hpp"

#include <gtest/gtest.h>

#include <fcntl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <vector>

#include "proxy/pressure.hpp"

namespace drover::proxy {
namespace {

constexpr std::size_t kCapacity = Pipe::kCapacity;

bool is_open(int fd) { return ::fcntl(fd, F_GETFD) >= 0 || errno != EBADF; }

TEST(PipeTest, AnOpenedPipeCarriesBytesAndIsNonBlocking) {
    Pipe pipe = Pipe::open(kCapacity);
    ASSERT_TRUE(pipe);
    EXPECT_EQ(::write(pipe.write_end(), "abc", 3), 3);
    char got[8];
    EXPECT_EQ(::read(pipe.read_end(), got, sizeof got), 3);
    EXPECT_EQ(::read(pipe.read_end(), got, sizeof got), -1);   // empty: would block, does not
    EXPECT_EQ(errno, EAGAIN);
    EXPECT_NE(::fcntl(pipe.read_end(), F_GETFD) & FD_CLOEXEC, 0);
    EXPECT_GE(::fcntl(pipe.write_end(), F_GETPIPE_SZ), static_cast<int>(kCapacity));
}

TEST(PipeTest, DroppingAPipeClosesBothEnds) {
    int read_end = -1;
    int write_end = -1;
    {
        Pipe pipe = Pipe::open(kCapacity);
        ASSERT_TRUE(pipe);
        read_end = pipe.read_end();
        write_end = pipe.write_end();
        Pipe moved = std::move(pipe);   // the moved-from pipe owns nothing and closes nothing
        EXPECT_FALSE(pipe);
        EXPECT_TRUE(is_open(read_end));
    }
    EXPECT_FALSE(is_open(read_end));
    EXPECT_FALSE(is_open(write_end));
}

TEST(PipeTest, PastTheUsersPipeBudgetThereIsNoPipeRatherThanATinyOne) {
    if (::geteuid() != 0) { GTEST_SKIP() << "needs root, to become an unprivileged user in a child"; }
    enum Exit { refused = 0, tiny_pipe = 1, no_user = 2, no_budget = 3, descriptors = 4 };
    const pid_t child = ::fork();
    ASSERT_GE(child, 0);
    if (child == 0) {
        // nobody: an unprivileged user, to whom the kernel's budget of pipe pages applies.
        if (::setgid(65534) != 0 || ::setuid(65534) != 0) { ::_exit(no_user); }
        std::vector<Pipe> pipes;
        for (int i = 0; i < 4096; ++i) {
            Pipe pipe = Pipe::open(kCapacity);
            if (!pipe) { ::_exit(2 * static_cast<int>(pipes.size()) + 16 >= descriptor_ceiling() ? descriptors : refused); }
            if (::fcntl(pipe.write_end(), F_GETPIPE_SZ) < static_cast<int>(Pipe::kMinCapacity)) { ::_exit(tiny_pipe); }
            pipes.push_back(std::move(pipe));
        }
        ::_exit(no_budget);
    }
    int status = 0;
    ASSERT_EQ(::waitpid(child, &status, 0), child);
    ASSERT_TRUE(WIFEXITED(status));
    switch (WEXITSTATUS(status)) {
        case no_user: GTEST_SKIP() << "could not become nobody";
        case no_budget: GTEST_SKIP() << "4,096 pipes fit in this machine's fs.pipe-user-pages-soft";
        case descriptors: GTEST_SKIP() << "the descriptor limit came before the pipe budget";
        default: EXPECT_EQ(WEXITSTATUS(status), refused) << "a pipe smaller than Pipe::kMinCapacity was handed out";
    }
}

TEST(PipePoolTest, APipePutBackIsTheNextOneTaken) {
    PipePool pool;
    Pipe first = pool.take(kCapacity);
    ASSERT_TRUE(first);
    const int read_end = first.read_end();
    pool.put(std::move(first));
    EXPECT_EQ(pool.kept(), 1u);
    Pipe again = pool.take(kCapacity);
    EXPECT_EQ(again.read_end(), read_end);
    EXPECT_EQ(pool.kept(), 0u);
}

TEST(PipePoolTest, KeepsAtMostItsLimitAndClosesTheRest) {
    PipePool pool;
    std::vector<Pipe> pipes;
    for (std::size_t i = 0; i < PipePool::kKept + 1; ++i) {
        pipes.push_back(pool.take(kCapacity));
        ASSERT_TRUE(pipes.back());
    }
    const int last_read_end = pipes.back().read_end();
    for (auto& pipe : pipes) { pool.put(std::move(pipe)); }
    EXPECT_EQ(pool.kept(), PipePool::kKept);
    EXPECT_FALSE(is_open(last_read_end));
}

TEST(PipePoolTest, NoPipeIsNotKept) {
    PipePool pool;
    pool.put(Pipe{});
    EXPECT_EQ(pool.kept(), 0u);
}

}  // namespace
}  // namespace drover::proxy
