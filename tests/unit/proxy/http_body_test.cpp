#include "proxy/http_body.hpp"

// Beast's chunked decoder is the reference the body reader is compared with.
#include <boost/beast/http.hpp>
#include <gtest/gtest.h>

#include <array>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace drover::proxy::http_body {
namespace {

namespace http = boost::beast::http;

// What feeding a reader produced: body bytes, input bytes used, and how it ended.
struct Outcome {
    std::string data;
    std::size_t consumed = 0;
    bool done = false;
    std::optional<std::string> error;
};

// Feeds `pieces` as reads arriving into a buffer, the way the session does: next() is called until
// the buffer is used up (or the body is done or broken), unused bytes stay for the next read.
Outcome feed(BodyReader reader, const std::vector<std::string_view>& pieces) {
    Outcome out;
    std::string buffer;
    for (std::string_view piece : pieces) {
        buffer.append(piece);
        while (!buffer.empty() && !reader.done()) {
            Step step;
            const std::string_view input = buffer;
            if (auto error = reader.next(input, step)) {
                out.error = std::string(*error);
                out.done = reader.done();
                return out;
            }
            // Progress on every non-empty input; data is a view of the bytes it says it used.
            EXPECT_GT(step.consumed, 0u);
            EXPECT_LE(step.consumed, input.size());
            if (!step.data.empty()) {
                EXPECT_GE(step.data.data(), input.data());
                EXPECT_LE(step.data.data() + step.data.size(), input.data() + step.consumed);
            }
            if (step.consumed == 0) { return out; }
            out.data.append(step.data);
            out.consumed += step.consumed;
            buffer.erase(0, step.consumed);
        }
        if (reader.done()) { break; }
    }
    out.done = reader.done();
    return out;
}

Outcome feed(BodyReader reader, std::string_view input) { return feed(reader, std::vector<std::string_view>{input}); }

// One byte per read: the worst split there is.
Outcome feed_bytewise(BodyReader reader, std::string_view input) {
    std::vector<std::string_view> pieces;
    for (std::size_t i = 0; i < input.size(); ++i) { pieces.push_back(input.substr(i, 1)); }
    return feed(reader, pieces);
}

// ---- Content-Length ----

TEST(BodyLength, ExactBytesAndNoMore) {
    // What follows the body is the next message on the connection (pipelining): never consumed.
    const auto out = feed(BodyReader::length(5), "helloGET / HTTP/1.1\r\n");
    EXPECT_FALSE(out.error);
    EXPECT_TRUE(out.done);
    EXPECT_EQ(out.data, "hello");
    EXPECT_EQ(out.consumed, 5u);
}

TEST(BodyLength, SplitInput) {
    for (std::size_t cut = 0; cut <= 10; ++cut) {
        const std::string_view body = "0123456789";
        const auto out = feed(BodyReader::length(10), {body.substr(0, cut), body.substr(cut), "extra"});
        EXPECT_FALSE(out.error) << cut;
        EXPECT_TRUE(out.done) << cut;
        EXPECT_EQ(out.data, body) << cut;
        EXPECT_EQ(out.consumed, 10u) << cut;
    }
}

TEST(BodyLength, RemainingCountsDown) {
    auto reader = BodyReader::length(5);
    EXPECT_EQ(reader.remaining(), 5u);
    EXPECT_FALSE(reader.done());
    Step step;
    ASSERT_FALSE(reader.next("he", step));
    EXPECT_EQ(step.consumed, 2u);
    EXPECT_EQ(step.data, "he");
    EXPECT_EQ(reader.remaining(), 3u);
    EXPECT_FALSE(reader.done());
    ASSERT_FALSE(reader.next("lloX", step));
    EXPECT_EQ(step.consumed, 3u);
    EXPECT_EQ(step.data, "llo");
    EXPECT_EQ(reader.remaining(), 0u);
    EXPECT_TRUE(reader.done());
}

TEST(BodyLength, EmptyBodyIsDoneAtOnce) {
    // The session skips reading when done() already holds (HEAD answers, 204, Content-Length: 0).
    auto reader = BodyReader::length(0);
    EXPECT_TRUE(reader.done());
    EXPECT_EQ(reader.remaining(), 0u);
}

TEST(BodyLength, HugeLengthDoesNotOverflow) {
    auto reader = BodyReader::length(UINT64_MAX);
    Step step;
    ASSERT_FALSE(reader.next("abc", step));
    EXPECT_EQ(step.data, "abc");
    EXPECT_EQ(reader.remaining(), UINT64_MAX - 3);
    EXPECT_FALSE(reader.done());
}

TEST(BodyLength, CloseBeforeTheEndIsACutBody) {
    auto reader = BodyReader::length(5);
    Step step;
    ASSERT_FALSE(reader.next("hel", step));
    EXPECT_FALSE(reader.on_close());
    EXPECT_FALSE(reader.close_delimited());
}

// ---- until_close ----

TEST(BodyUntilClose, EverythingIsDataUntilClose) {
    auto reader = BodyReader::until_close();
    EXPECT_TRUE(reader.close_delimited());
    EXPECT_EQ(reader.remaining(), 0u);
    std::string data;
    for (std::string_view piece : {"HTTP/1.1 200 OK\r\n", "0\r\n\r\n", "\x01\xff"}) {
        Step step;
        ASSERT_FALSE(reader.next(piece, step));
        EXPECT_EQ(step.consumed, piece.size());
        data.append(step.data);
        EXPECT_FALSE(reader.done());
    }
    EXPECT_EQ(data, "HTTP/1.1 200 OK\r\n0\r\n\r\n\x01\xff");
    EXPECT_TRUE(reader.on_close());
    EXPECT_TRUE(reader.done());
}

TEST(BodyUntilClose, EmptyBodyEndsAtClose) {
    auto reader = BodyReader::until_close();
    EXPECT_FALSE(reader.done());
    EXPECT_TRUE(reader.on_close());
    EXPECT_TRUE(reader.done());
}

// ---- chunked ----

// Extensions (with BWS and a quoted value), upper- and lower-case hex, leading zeros, trailers.
constexpr std::string_view kChunked =
    "5;name=value\r\nhello\r\n"
    "6 ; ext=\"q s\"\r\n world\r\n"
    "00a\r\n, 10 bytes\r\n"
    "1A\r\n and twenty-six more here!\r\n"
    "0;last\r\n"
    "Trailer-A: x\r\n"
    "Trailer-B: y\r\n"
    "\r\n";
constexpr std::string_view kChunkedData = "hello world, 10 bytes and twenty-six more here!";

TEST(BodyChunked, DecodesChunksAndSkipsExtensionsAndTrailers) {
    const std::string input = std::string(kChunked) + "GET /next HTTP/1.1\r\n";
    const auto out = feed(BodyReader::chunked(), input);
    EXPECT_FALSE(out.error) << *out.error;
    EXPECT_TRUE(out.done);
    EXPECT_EQ(out.data, kChunkedData);
    // The next pipelined request is not the body's.
    EXPECT_EQ(out.consumed, kChunked.size());
}

TEST(BodyChunked, EmptyBody) {
    for (std::string_view body : {"0\r\n\r\n", "000\r\n\r\n", "0;a=b\r\n\r\n", "0\r\nX: y\r\n\r\n"}) {
        const auto out = feed(BodyReader::chunked(), std::string(body) + "extra");
        EXPECT_FALSE(out.error) << body;
        EXPECT_TRUE(out.done) << body;
        EXPECT_EQ(out.data, "") << body;
        EXPECT_EQ(out.consumed, body.size()) << body;
    }
}

TEST(BodyChunked, SplitAtEveryByteBoundaryGivesTheSameBody) {
    // Reads end anywhere: inside the size, an extension, the CRLFs, the data, a trailer.
    const std::string input = std::string(kChunked) + "NEXT";
    for (std::size_t cut = 0; cut <= input.size(); ++cut) {
        const auto out = feed(BodyReader::chunked(), {std::string_view(input).substr(0, cut), std::string_view(input).substr(cut)});
        EXPECT_FALSE(out.error) << "cut at " << cut;
        EXPECT_TRUE(out.done) << "cut at " << cut;
        EXPECT_EQ(out.data, kChunkedData) << "cut at " << cut;
        EXPECT_EQ(out.consumed, kChunked.size()) << "cut at " << cut;
    }
    const auto out = feed_bytewise(BodyReader::chunked(), input);
    EXPECT_FALSE(out.error);
    EXPECT_TRUE(out.done);
    EXPECT_EQ(out.data, kChunkedData);
    EXPECT_EQ(out.consumed, kChunked.size());
}

TEST(BodyChunked, NotDoneUntilTheFinalCrlf) {
    // Every proper prefix leaves the body unfinished and unbroken.
    for (std::size_t size = 0; size < kChunked.size(); ++size) {
        const auto out = feed(BodyReader::chunked(), kChunked.substr(0, size));
        EXPECT_FALSE(out.error) << size;
        EXPECT_FALSE(out.done) << size;
    }
}

TEST(BodyChunked, LargestSizeThatFitsIsAccepted) {
    // 16 hex digits: 2^64-1 is a size, if an unlikely one.
    const auto out = feed(BodyReader::chunked(), "FFFFFFFFFFFFFFFF\r\nabc");
    EXPECT_FALSE(out.error);
    EXPECT_FALSE(out.done);
    EXPECT_EQ(out.data, "abc");
}

// Malformed framing must be refused whole and byte by byte: a state machine can forget a check
// when its input ends mid-token.
void expect_rejected(std::string_view input) {
    const auto whole = feed(BodyReader::chunked(), input);
    EXPECT_TRUE(whole.error) << "whole: " << input;
    EXPECT_FALSE(whole.done) << "whole: " << input;
    const auto bytewise = feed_bytewise(BodyReader::chunked(), input);
    EXPECT_TRUE(bytewise.error) << "bytewise: " << input;
    EXPECT_FALSE(bytewise.done) << "bytewise: " << input;
}

TEST(BodyChunked, RejectsBadSizes) {
    for (std::string_view input : {
             "g\r\nhello\r\n0\r\n\r\n",    // not hex
             "5x\r\nhello\r\n0\r\n\r\n",
             "0x5\r\nhello\r\n0\r\n\r\n",
             "-5\r\nhello\r\n0\r\n\r\n",
             "+5\r\nhello\r\n0\r\n\r\n",
             "\r\nhello\r\n0\r\n\r\n",     // no size digits at all
             ";ext\r\nhello\r\n0\r\n\r\n",
             " 5\r\nhello\r\n0\r\n\r\n",
             "5 5\r\nhello\r\n0\r\n\r\n",
             "5 \r\nhello\r\n0\r\n\r\n",   // whitespace with no extension after it (RFC 9112 §7.1.1)
             "5\t\r\nhello\r\n0\r\n\r\n",
             "5\r\nhello\r\n0 \r\n\r\n",
             "10000000000000000\r\n",     // 17 digits: more than 64 bits
             "FFFFFFFFFFFFFFFFF\r\n",
             "123456789abcdef0123\r\n",
         }) {
        expect_rejected(input);
    }
}

TEST(BodyChunked, RejectsBadLineEndings) {
    for (std::string_view input : {
             "5\nhello\r\n0\r\n\r\n",        // bare LF after the size
             "5;a=b\nhello\r\n0\r\n\r\n",
             "5\rhello\r\n0\r\n\r\n",
             "5\r\nhelloX\r\n0\r\n\r\n",     // no CRLF after the data
             "5\r\nhello\n0\r\n\r\n",
             "5\r\nhello\rX0\r\n\r\n",
             "5\r\nhellohello\r\n0\r\n\r\n",
             "0\r\n\rX",                      // a broken final CRLF
             "0\r\n\n",
             "0\r\nX: y\n\r\n",              // bare LF in a trailer
         }) {
        expect_rejected(input);
    }
}

TEST(BodyChunked, RejectsTrailerLinesThatAreNoFieldLines) {
    for (std::string_view input : {
             "0\r\nno colon here\r\n\r\n",
             "0\r\nX: y\r\n  folded\r\n\r\n",   // obs-fold
             "0\r\n\tX: y\r\n\r\n",
             "0\r\n: empty name\r\n\r\n",
             "0\r\nX : space before the colon\r\n\r\n",
             "0\r\nGET / HTTP/1.1\r\n\r\n",        // a request line where a trailer should be
             "0\r\nX\r\n\r\n",
         }) {
        expect_rejected(input);
    }
    const auto out = feed(BodyReader::chunked(), "3\r\nabc\r\n0\r\nX-Sum: 1\r\nY:\r\nZ:  v v \r\n\r\n");
    EXPECT_FALSE(out.error);
    EXPECT_TRUE(out.done);
}

TEST(BodyChunked, RejectsControlBytesInAnExtension) {
    expect_rejected("5;a\x01z\r\nhello\r\n0\r\n\r\n");
    expect_rejected(std::string_view("5;a\0z\r\nhello\r\n0\r\n\r\n", 18));
    expect_rejected("5;a=\x7f\r\nhello\r\n0\r\n\r\n");
    expect_rejected("5;a\nz\r\nhello\r\n0\r\n\r\n");
}

TEST(BodyChunked, ChunkLineLimit) {
    const std::string shorter = "5;" + std::string(kMaxChunkLine / 2, 'a') + "\r\nhello\r\n0\r\n\r\n";
    const auto out = feed(BodyReader::chunked(), shorter);
    EXPECT_FALSE(out.error);
    EXPECT_TRUE(out.done);
    EXPECT_EQ(out.data, "hello");
    // An extension that never ends is refused without waiting for its end.
    expect_rejected("5;" + std::string(kMaxChunkLine + 1, 'a') + "\r\nhello\r\n0\r\n\r\n");
    expect_rejected("5;" + std::string(kMaxChunkLine + 1, 'a'));
    // So is a size that never ends.
    expect_rejected(std::string(kMaxChunkLine + 1, '0'));
}

TEST(BodyChunked, TrailerSectionLimit) {
    std::string trailers;
    while (trailers.size() < kMaxTrailerBytes / 2) { trailers += "X-T: " + std::string(1000, 'b') + "\r\n"; }
    const auto out = feed(BodyReader::chunked(), "3\r\nabc\r\n0\r\n" + trailers + "\r\n");
    EXPECT_FALSE(out.error);
    EXPECT_TRUE(out.done);
    EXPECT_EQ(out.data, "abc");

    while (trailers.size() <= kMaxTrailerBytes) { trailers += "X-T: " + std::string(1000, 'b') + "\r\n"; }
    expect_rejected("3\r\nabc\r\n0\r\n" + trailers + "\r\n");
    // One endless trailer line is cut off too.
    expect_rejected("0\r\nX: " + std::string(kMaxTrailerBytes + 1, 'c'));
}

TEST(BodyChunked, CloseBeforeTheEndIsACutBody) {
    auto reader = BodyReader::chunked();
    EXPECT_FALSE(reader.close_delimited());
    Step step;
    ASSERT_FALSE(reader.next("5\r\nhel", step));
    EXPECT_FALSE(reader.on_close());
    EXPECT_EQ(reader.remaining(), 0u);   // only a Content-Length body counts down
}

// ---- Differential: Beast's chunked decoder on the same bodies ----

std::optional<std::string> beast_decode(std::string_view body) {
    const std::string message = "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n" + std::string(body);
    http::response_parser<http::string_body> parser;
    parser.eager(true);
    parser.body_limit(boost::none);
    std::string_view rest = message;
    while (!parser.is_done() && !rest.empty()) {
        boost::beast::error_code ec;
        const auto used = parser.put(boost::asio::buffer(rest.data(), rest.size()), ec);
        if (ec && ec != http::error::need_more) { return std::nullopt; }
        if (used == 0) { break; }
        rest.remove_prefix(used);
    }
    if (!parser.is_done()) { return std::nullopt; }
    return parser.get().body();
}

TEST(BodyChunked, AgreesWithBeast) {
    for (std::string_view body : {
             kChunked,
             std::string_view("0\r\n\r\n"),
             std::string_view("1\r\na\r\n0\r\n\r\n"),
             std::string_view("3\r\nabc\r\n3\r\ndef\r\n0\r\n\r\n"),
             std::string_view("A\r\n0123456789\r\na\r\nabcdefghij\r\n0\r\n\r\n"),
             std::string_view("0003\r\n\r\n\r\r\n0\r\n\r\n"),   // data that looks like framing
             std::string_view("4;a;b=c;d=\"e;f\"\r\nab\r\n\r\n0\r\n\r\n"),
             std::string_view("2 ;x=y\r\nhi\r\n0\r\nExpires: never\r\nX-Sum: 12\r\n\r\n"),
             std::string_view("10\r\n0123456789abcdef\r\n0\r\n\r\n"),
         }) {
        const auto ours = feed(BodyReader::chunked(), body);
        const auto beast = beast_decode(body);
        ASSERT_TRUE(beast) << "Beast refused: " << body;
        EXPECT_FALSE(ours.error) << body;
        EXPECT_TRUE(ours.done) << body;
        EXPECT_EQ(ours.consumed, body.size()) << body;
        EXPECT_EQ(ours.data, *beast) << body;
        EXPECT_EQ(feed_bytewise(BodyReader::chunked(), body).data, *beast) << body;
    }
}

// gather(): small chunks that arrived together go on as one run, copied, within the scratch space.
TEST(BodyGather, SmallChunksBehindTheFirstAreCopiedTogether) {
    std::string input;
    for (char c : std::string("abcdefghij")) { input += std::string("1\r\n") + c + "\r\n"; }
    input += "0\r\n\r\n";
    auto reader = BodyReader::chunked();
    Step first;
    ASSERT_FALSE(reader.next(input, first));   // the size line and the first byte
    ASSERT_EQ(first.data, "a");
    std::array<char, 64> scratch{};
    Step out;
    ASSERT_FALSE(gather(reader, input, first, scratch, out));
    EXPECT_EQ(out.data, "abcdefghij");
    EXPECT_EQ(out.data.data(), scratch.data());
    EXPECT_EQ(out.consumed, input.size());
    EXPECT_TRUE(reader.done());
}

TEST(BodyGather, StopsWhereTheScratchIsFullAndLeavesTheRestUnread) {
    std::string input;
    for (int i = 0; i < 8; ++i) { input += "3\r\nxyz\r\n"; }
    auto reader = BodyReader::chunked();
    Step first;
    ASSERT_FALSE(reader.next(input, first));
    ASSERT_EQ(first.data, "xyz");
    std::array<char, 7> scratch{};
    Step out;
    ASSERT_FALSE(gather(reader, input, first, scratch, out));
    EXPECT_EQ(out.data, "xyzxyzx");   // full: the last chunk cut where the room ended
    // The rest reads on from out.consumed: 2 bytes of that chunk, then the others.
    const Outcome rest = feed(std::move(reader), {std::string_view(input).substr(out.consumed)});
    EXPECT_EQ(rest.data, "yz" + std::string("xyzxyzxyzxyzxyz"));   // 24 bytes in all
    EXPECT_FALSE(rest.error);
}

TEST(BodyGather, BrokenFramingBehindIsReported) {
    const std::string input = "1\r\na\r\nzz\r\nb\r\n";
    auto reader = BodyReader::chunked();
    Step first;
    ASSERT_FALSE(reader.next(input, first));
    ASSERT_EQ(first.data, "a");
    std::array<char, 64> scratch{};
    Step out;
    EXPECT_TRUE(gather(reader, input, first, scratch, out));
}

}  // namespace
}  // namespace drover::proxy::http_body
