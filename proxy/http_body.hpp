#pragma once
// Reading an HTTP/1.1 message body as it arrives (RFC 9112 §6, §7.1): by Content-Length, chunked, or
// until the connection closes. Pure and incremental, so it is unit-tested and fuzzed without sockets:
// the session hands it whatever bytes are buffered and forwards the body bytes it points out, straight
// from the read buffer (no copy into a body buffer). Chunk framing is read byte by byte as a state
// machine, so a chunk-size line or trailer split across reads needs no buffering of its own.

#include <cstddef>
#include <cstdint>
#include <optional>
#include <span>
#include <string_view>

namespace drover::proxy::http_body {

// Longest chunk-size line (size, extensions) and total trailer section accepted; beyond, the body is
// malformed (a peer streaming an endless extension or trailer would otherwise hold the connection).
inline constexpr std::size_t kMaxChunkLine = 4096;
inline constexpr std::size_t kMaxTrailerBytes = 64 * 1024;

// What one call of BodyReader::next found in its input.
struct Step {
    std::size_t consumed = 0;   // bytes of the input used up (framing and data); the rest is not body
    std::string_view data;      // body bytes among them (a view into the input), possibly none
};

class BodyReader {
public:
    // A body of exactly `length` bytes.
    static BodyReader length(std::uint64_t length);
    // A chunked body: chunks, the last chunk, trailers (read and dropped), the final CRLF.
    static BodyReader chunked();
    // A response body that ends when the connection closes (neither framing was given).
    static BodyReader until_close();

    // Takes framing up to the next body bytes, or body bytes (at most one run of them per call), from
    // `input`. A non-empty input always makes progress unless done(). Returns the problem on
    // malformed chunk framing (the message is broken: the connection must not be reused).
    std::optional<std::string_view> next(std::string_view input, Step& step);

    // The connection closed: the end of an until_close body; for the others, a cut body (false).
    bool on_close();

    bool done() const { return state_ == State::done; }
    bool close_delimited() const { return close_delimited_; }
    // Body bytes still to come of a Content-Length body (0 for the other kinds).
    std::uint64_t remaining() const { return close_delimited_ || chunked_ ? 0 : remaining_; }

private:
    enum class State : std::uint8_t {
        data,         // `remaining_` body bytes (of the whole body, or of the current chunk) to come
        size,         // chunk-size hex digits
        size_space,   // whitespace after the size (BWS before an extension)
        extension,    // ";" ... up to CR
        size_lf,      // LF after the chunk-size line
        data_cr,      // CR after chunk data
        data_lf,      // LF after chunk data
        trailer_start,
        trailer_name,   // a trailer field's name, up to its ":"
        trailer,        // its value
        trailer_lf,
        final_lf,
        done,
    };
    explicit BodyReader(State state) : state_(state) {}

    State state_;
    bool chunked_ = false;
    bool close_delimited_ = false;
    std::uint64_t remaining_ = 0;
    std::size_t digits_ = 0;         // of the current chunk size
    std::size_t line_bytes_ = 0;     // of the current chunk-size line
    std::size_t trailer_bytes_ = 0;  // of the whole trailer section
};

// After `first`, a step of `input` with a small run of data (a body of small chunks): copies that run
// and the runs behind it in `input` into `scratch`, as many as fit, so that they go on in one write
// rather than one per chunk. `out` then covers them all: its data is a view into `scratch`, its
// `consumed` counts from the start of `input`. The data never outgrows `scratch` (the reader is given
// no more input than there is room for). Returns the problem on broken framing, as next() does.
std::optional<std::string_view> gather(BodyReader& body, std::string_view input, const Step& first,
                                       std::span<char> scratch, Step& out);

}  // namespace drover::proxy::http_body
