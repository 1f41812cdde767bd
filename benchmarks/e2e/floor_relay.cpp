// The floor of proxying on this machine: a relay that moves bytes between each client connection and
// an upstream connection of its own, with no protocol work at all (no parsing, no header rewriting,
// no routing, no timeouts). One thread, level-triggered epoll, one recv and one send per message.
// Whatever a real proxy spends per request above this row of the e2e table is its own work; what this
// spends is the kernel's TCP work on loopback plus the event loop's syscalls, which every proxy pays.
//
//   drover_floor_relay LISTEN_PORT ORIGIN_PORT      (both on 127.0.0.1; stops on SIGTERM)
//
// LISTEN_PORT 0 takes a free port; the first line on stdout says which ("listening on 127.0.0.1:N").
//
// A benchmark tool, not part of Drover: benchmarks/e2e/harness.py runs it as the "floor" target.
#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <array>
#include <cerrno>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <utility>
#include <vector>

namespace {

constexpr std::size_t kBufferSize = 16 * 1024;
constexpr std::uint32_t kIn = EPOLLIN;
constexpr std::uint32_t kOut = EPOLLOUT;

struct Pair;

// One connection of a pair, and the bytes read from it that its peer has not taken yet.
struct Side {
    Pair* pair = nullptr;
    Side* peer = nullptr;
    int fd = -1;
    std::uint32_t watched = 0;   // the epoll events registered now
    bool eof = false;            // read its end; the peer was shut for writing once this drained
    std::size_t begin = 0;
    std::size_t end = 0;
    std::array<char, kBufferSize> buffer{};
};

struct Pair {
    Side client;
    Side upstream;
    bool closed = false;
};

int epoll_fd = -1;
std::vector<Pair*> closed_pairs;   // freed after the batch of events that may still name them

[[noreturn]] void die(const char* what) {
    std::perror(what);
    std::exit(1);
}

sockaddr_in loopback(int port) {
    sockaddr_in address{};
    address.sin_family = AF_INET;
    address.sin_port = htons(static_cast<std::uint16_t>(port));
    address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    return address;
}

void set_options(int fd) {
    const int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
}

void watch(Side& side, std::uint32_t events) {
    if (side.watched == events) { return; }
    epoll_event event{};
    event.events = events;
    event.data.ptr = &side;
    if (epoll_ctl(epoll_fd, EPOLL_CTL_MOD, side.fd, &event) != 0) { die("epoll_ctl"); }
    side.watched = events;
}

void close_pair(Pair& pair) {
    if (pair.closed) { return; }
    pair.closed = true;
    for (Side* side : {&pair.client, &pair.upstream}) {
        epoll_ctl(epoll_fd, EPOLL_CTL_DEL, side->fd, nullptr);
        close(side->fd);
    }
    closed_pairs.push_back(&pair);
}

// Sends what `from` holds to its peer. While the peer cannot take more, `from` is not read (back
// pressure) and the peer is watched for writability instead.
void flush(Side& from) {
    Side& to = *from.peer;
    while (from.begin < from.end) {
        const ssize_t sent = send(to.fd, from.buffer.data() + from.begin, from.end - from.begin, MSG_NOSIGNAL | MSG_DONTWAIT);
        if (sent < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
            watch(from, from.watched & ~kIn);
            watch(to, to.watched | EPOLLOUT);
            return;
        }
        if (sent <= 0) {
            close_pair(*from.pair);
            return;
        }
        from.begin += static_cast<std::size_t>(sent);
    }
    from.begin = from.end = 0;
    watch(to, to.watched & ~kOut);
    if (from.eof) {
        shutdown(to.fd, SHUT_WR);
        if (to.eof && to.begin == to.end) { close_pair(*from.pair); }
        return;
    }
    watch(from, from.watched | EPOLLIN);
}

void on_readable(Side& side) {
    const ssize_t got = recv(side.fd, side.buffer.data(), side.buffer.size(), 0);
    if (got < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)) { return; }
    if (got < 0) {
        close_pair(*side.pair);
        return;
    }
    if (got == 0) {
        side.eof = true;
        watch(side, side.watched & ~kIn);
    }
    side.begin = 0;
    side.end = static_cast<std::size_t>(got);
    flush(side);
}

// The upstream connection is made with a blocking connect: on loopback it completes within the call
// (the handshake runs in the kernel there and then), and this tool serves only benchmarks.
void on_accept(int listener, int origin_port) {
    for (;;) {
        const int client = accept4(listener, nullptr, nullptr, SOCK_NONBLOCK);
        if (client < 0) { return; }
        const int upstream = socket(AF_INET, SOCK_STREAM, 0);
        const sockaddr_in origin = loopback(origin_port);
        if (upstream < 0 || connect(upstream, reinterpret_cast<const sockaddr*>(&origin), sizeof origin) != 0) {
            std::perror("connect to the origin");
            if (upstream >= 0) { close(upstream); }
            close(client);
            continue;
        }
        fcntl(upstream, F_SETFL, fcntl(upstream, F_GETFL) | O_NONBLOCK);
        set_options(client);
        set_options(upstream);
        auto* pair = new Pair;
        pair->client.fd = client;
        pair->upstream.fd = upstream;
        for (auto [side, peer] : {std::pair{&pair->client, &pair->upstream}, std::pair{&pair->upstream, &pair->client}}) {
            side->pair = pair;
            side->peer = peer;
            epoll_event event{};
            event.events = EPOLLIN;
            event.data.ptr = side;
            if (epoll_ctl(epoll_fd, EPOLL_CTL_ADD, side->fd, &event) != 0) { die("epoll_ctl"); }
            side->watched = EPOLLIN;
        }
    }
}

}  // namespace

int main(int argc, char** argv) {
    if (argc != 3) {
        std::fprintf(stderr, "usage: %s LISTEN_PORT ORIGIN_PORT\n", argv[0]);
        return 2;
    }
    const int listen_port = std::atoi(argv[1]);
    const int origin_port = std::atoi(argv[2]);
    const int listener = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
    const int one = 1;
    setsockopt(listener, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    const sockaddr_in address = loopback(listen_port);
    if (bind(listener, reinterpret_cast<const sockaddr*>(&address), sizeof address) != 0 || listen(listener, 4096) != 0) {
        die("listen");
    }
    sockaddr_in bound{};
    socklen_t bound_size = sizeof bound;
    getsockname(listener, reinterpret_cast<sockaddr*>(&bound), &bound_size);
    std::printf("listening on 127.0.0.1:%d\n", ntohs(bound.sin_port));
    std::fflush(stdout);
    epoll_fd = epoll_create1(0);
    epoll_event event{};
    event.events = EPOLLIN;
    event.data.ptr = nullptr;   // the listener
    if (epoll_fd < 0 || epoll_ctl(epoll_fd, EPOLL_CTL_ADD, listener, &event) != 0) { die("epoll"); }
    std::array<epoll_event, 128> events{};
    for (;;) {
        const int n = epoll_wait(epoll_fd, events.data(), static_cast<int>(events.size()), -1);
        if (n < 0 && errno != EINTR) { die("epoll_wait"); }
        for (int i = 0; i < n; ++i) {
            auto* side = static_cast<Side*>(events[static_cast<std::size_t>(i)].data.ptr);
            const std::uint32_t what = events[static_cast<std::size_t>(i)].events;
            if (side == nullptr) {
                on_accept(listener, origin_port);
                continue;
            }
            if (side->pair->closed) { continue; }
            if ((what & EPOLLERR) != 0) {   // reset: nothing more can be delivered either way
                close_pair(*side->pair);
                continue;
            }
            if ((what & EPOLLOUT) != 0) { flush(*side->peer); }
            if (side->pair->closed) { continue; }
            // EPOLLHUP (both ways shut) comes whatever is watched; while this side's bytes wait for
            // its peer (back pressure) it is left for the flush to end, not read.
            if ((what & (EPOLLIN | EPOLLHUP)) != 0 && (side->watched & kIn) != 0) { on_readable(*side); }
        }
        for (Pair* pair : closed_pairs) { delete pair; }
        closed_pairs.clear();
    }
}
