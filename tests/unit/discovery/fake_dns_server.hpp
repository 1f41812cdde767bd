#pragma once
// A scriptable DNS server on 127.0.0.1 (UDP, an ephemeral port) for resolver tests: each (name, type)
// answers with the records, or the rcode, the test sets, or not at all. Unknown names are NXDOMAIN.
// Runs on the io_context it is given, the same one the resolver under test uses.

#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/udp.hpp>

#include <array>
#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "config/config.hpp"

namespace drover::discovery::fakes {

inline constexpr int kA = 1;
inline constexpr int kAaaa = 28;
inline constexpr int kSrv = 33;

inline constexpr int kNoError = 0;
inline constexpr int kServFail = 2;
inline constexpr int kNxDomain = 3;
inline constexpr int kRefused = 5;

struct FakeRecord {
    std::uint32_t ttl = 1;
    std::string address;   // A / AAAA
    std::uint16_t priority = 0, weight = 0, port = 0;   // SRV
    std::string target;                                 // SRV
};

inline FakeRecord address_record(std::string address, std::uint32_t ttl = 1) {
    FakeRecord r;
    r.ttl = ttl;
    r.address = std::move(address);
    return r;
}

inline FakeRecord srv_record(std::uint16_t priority, std::uint16_t weight, std::uint16_t port,
                             std::string target, std::uint32_t ttl = 1) {
    FakeRecord r;
    r.ttl = ttl;
    r.priority = priority;
    r.weight = weight;
    r.port = port;
    r.target = std::move(target);
    return r;
}

struct FakeAnswer {
    int rcode = kNoError;
    std::vector<FakeRecord> records;
    bool drop = false;   // never answer: the client times out
};

class FakeDnsServer {
public:
    explicit FakeDnsServer(boost::asio::io_context& io)
        : socket_(io, boost::asio::ip::udp::endpoint(boost::asio::ip::make_address("127.0.0.1"), 0)) {
        receive();
    }

    config::Address address() const { return config::Address{"127.0.0.1", socket_.local_endpoint().port()}; }

    void set(const std::string& name, int type, FakeAnswer answer) {
        answers_[{name, type}] = std::move(answer);
    }
    void set_all(FakeAnswer answer) { override_ = std::move(answer); }   // every question, until cleared
    void clear_all() { override_.reset(); }
    int queries(const std::string& name, int type) const {
        const auto it = queries_.find({name, type});
        return it == queries_.end() ? 0 : it->second;
    }
    int total_queries() const { return total_; }

private:
    void receive() {
        socket_.async_receive_from(boost::asio::buffer(in_), sender_,
                                   [this](const boost::system::error_code& ec, std::size_t n) {
                                       if (ec) { return; }
                                       answer(n);
                                       receive();
                                   });
    }

    void answer(std::size_t n) {
        if (n < 12) { return; }
        // The question: labels from offset 12, then type and class.
        std::size_t p = 12;
        std::string name;
        while (p < n && in_[p] != 0) {
            const std::size_t len = in_[p];
            if (!name.empty()) { name += '.'; }
            name.append(reinterpret_cast<const char*>(&in_[p + 1]), len);
            p += 1 + len;
        }
        p += 1;
        if (p + 4 > n) { return; }
        const int type = (in_[p] << 8) | in_[p + 1];
        const std::size_t question_end = p + 4;
        ++queries_[{name, type}];
        ++total_;

        FakeAnswer answer;
        if (override_) {
            answer = *override_;
        } else if (const auto it = answers_.find({name, type}); it != answers_.end()) {
            answer = it->second;
        } else {
            bool name_exists = false;
            for (const auto& [key, value] : answers_) { name_exists = name_exists || key.first == name; }
            answer.rcode = name_exists ? kNoError : kNxDomain;   // other type of a known name: NODATA
        }
        if (answer.drop) { return; }

        std::vector<std::uint8_t> out(in_.begin(), in_.begin() + static_cast<std::ptrdiff_t>(question_end));
        out[2] = static_cast<std::uint8_t>(0x80 | (in_[2] & 0x01));   // QR, keep RD
        out[3] = static_cast<std::uint8_t>(0x80 | answer.rcode);      // RA, rcode
        const auto put16 = [&](unsigned v) {
            out.push_back(static_cast<std::uint8_t>(v >> 8));
            out.push_back(static_cast<std::uint8_t>(v));
        };
        const auto count = answer.rcode == kNoError ? answer.records.size() : 0;
        out[6] = static_cast<std::uint8_t>(count >> 8);
        out[7] = static_cast<std::uint8_t>(count);
        out[8] = out[9] = out[10] = out[11] = 0;
        for (std::size_t i = 0; i < count; ++i) {
            const auto& r = answer.records[i];
            put16(0xC00C);   // the name: a pointer to the question's
            put16(static_cast<unsigned>(type));
            put16(1);
            put16(r.ttl >> 16);
            put16(r.ttl & 0xFFFF);
            std::vector<std::uint8_t> data;
            if (type == kA) {
                const auto bytes = boost::asio::ip::make_address_v4(r.address).to_bytes();
                data.assign(bytes.begin(), bytes.end());
            } else if (type == kAaaa) {
                const auto bytes = boost::asio::ip::make_address_v6(r.address).to_bytes();
                data.assign(bytes.begin(), bytes.end());
            } else if (type == kSrv) {
                for (const unsigned v : {unsigned{r.priority}, unsigned{r.weight}, unsigned{r.port}}) {
                    data.push_back(static_cast<std::uint8_t>(v >> 8));
                    data.push_back(static_cast<std::uint8_t>(v));
                }
                std::size_t start = 0;
                while (start < r.target.size()) {
                    auto dot = r.target.find('.', start);
                    if (dot == std::string::npos) { dot = r.target.size(); }
                    data.push_back(static_cast<std::uint8_t>(dot - start));
                    data.insert(data.end(), r.target.begin() + static_cast<std::ptrdiff_t>(start),
                                r.target.begin() + static_cast<std::ptrdiff_t>(dot));
                    start = dot + 1;
                }
                data.push_back(0);
            }
            put16(static_cast<unsigned>(data.size()));
            out.insert(out.end(), data.begin(), data.end());
        }
        boost::system::error_code ignored;
        socket_.send_to(boost::asio::buffer(out), sender_, 0, ignored);
    }

    boost::asio::ip::udp::socket socket_;
    boost::asio::ip::udp::endpoint sender_;
    std::array<std::uint8_t, 1500> in_{};
    std::map<std::pair<std::string, int>, FakeAnswer> answers_;
    std::optional<FakeAnswer> override_;
    std::map<std::pair<std::string, int>, int> queries_;
    int total_ = 0;
};

}  // namespace drover::discovery::fakes
