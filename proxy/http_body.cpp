#include "proxy/http_body.hpp"

#include <algorithm>
#include <limits>

#include "proxy/http_rules.hpp"

namespace drover::proxy::http_body {

BodyReader BodyReader::length(std::uint64_t length) {
    BodyReader reader(length == 0 ? State::done : State::data);
    reader.remaining_ = length;
    return reader;
}

BodyReader BodyReader::chunked() {
    BodyReader reader(State::size);
    reader.chunked_ = true;
    return reader;
}

BodyReader BodyReader::until_close() {
    BodyReader reader(State::data);
    reader.close_delimited_ = true;
    reader.remaining_ = std::numeric_limits<std::uint64_t>::max();
    return reader;
}

bool BodyReader::on_close() {
    if (close_delimited_ && state_ == State::data) {
        state_ = State::done;
        return true;
    }
    return state_ == State::done;
}

namespace {

int hex_value(unsigned char c) {
    if (c >= '0' && c <= '9') { return c - '0'; }
    if (c >= 'a' && c <= 'f') { return c - 'a' + 10; }
    if (c >= 'A' && c <= 'F') { return c - 'A' + 10; }
    return -1;
}

// A byte a chunk extension or trailer line may not hold: controls other than HTAB, and DEL.
bool forbidden(unsigned char c) { return (c < 0x20 && c != '\t') || c == 0x7f; }

}  // namespace

std::optional<std::string_view> BodyReader::next(std::string_view input, Step& step) {
    step = Step{};
    std::size_t i = 0;
    while (i < input.size()) {
        const auto c = static_cast<unsigned char>(input[i]);
        switch (state_) {
            case State::data: {
                const auto take = static_cast<std::size_t>(std::min<std::uint64_t>(remaining_, input.size() - i));
                step.data = input.substr(i, take);
                i += take;
                if (!close_delimited_) { remaining_ -= take; }
                if (remaining_ == 0) { state_ = chunked_ ? State::data_cr : State::done; }
                step.consumed = i;
                return std::nullopt;   // one run of data per call
            }
            case State::size: {
                const int digit = hex_value(c);
                if (digit >= 0) {
                    if (remaining_ > (std::numeric_limits<std::uint64_t>::max() >> 4)) { return "chunk size too large"; }
                    remaining_ = (remaining_ << 4) | static_cast<std::uint64_t>(digit);
                    ++digits_;
                } else if (digits_ == 0) {
                    return "chunk size is not hexadecimal";
                } else if (c == ';') {
                    state_ = State::extension;
                } else if (c == ' ' || c == '\t') {
                    state_ = State::size_space;
                } else if (c == '\r') {
                    state_ = State::size_lf;
                } else {
                    return "chunk size is not hexadecimal";
                }
                break;
            }
            case State::size_space:
                // RFC 9112 §7.1.1: whitespace after the size is BWS before an extension's ";" only.
                if (c == ';') {
                    state_ = State::extension;
                } else if (c != ' ' && c != '\t') {
                    return "malformed chunk-size line";
                }
                break;
            case State::extension:
                if (c == '\r') {
                    state_ = State::size_lf;
                } else if (forbidden(c)) {
                    return "control character in a chunk extension";
                }
                break;
            case State::size_lf:
                if (c != '\n') { return "chunk-size line not ended by CRLF"; }
                digits_ = 0;
                line_bytes_ = 0;
                state_ = remaining_ == 0 ? State::trailer_start : State::data;
                break;
            case State::data_cr:
                if (c != '\r') { return "chunk data not followed by CRLF"; }
                state_ = State::data_lf;
                break;
            case State::data_lf:
                if (c != '\n') { return "chunk data not followed by CRLF"; }
                state_ = State::size;
                break;
            case State::trailer_start:
                if (c == '\r') {
                    state_ = State::final_lf;
                    break;
                }
                // A field line, as in a header section (RFC 9112 section 7.1.2): a name of token
                // characters right at the start (no obs-fold, no empty name), a colon, a value.
                if (!http_rules::is_token_char(c)) { return "malformed trailer field"; }
                state_ = State::trailer_name;
                [[fallthrough]];
            case State::trailer_name:
                if (++trailer_bytes_ > kMaxTrailerBytes) { return "trailer section too large"; }
                if (c == ':') {
                    state_ = State::trailer;
                } else if (!http_rules::is_token_char(c)) {
                    return "malformed trailer field";
                }
                break;
            case State::trailer:
                if (++trailer_bytes_ > kMaxTrailerBytes) { return "trailer section too large"; }
                if (c == '\r') {
                    state_ = State::trailer_lf;
                } else if (forbidden(c)) {
                    return "control character in a trailer field";
                }
                break;
            case State::trailer_lf:
                if (c != '\n') { return "trailer line not ended by CRLF"; }
                state_ = State::trailer_start;
                break;
            case State::final_lf:
                if (c != '\n') { return "chunked body not ended by CRLF"; }
                state_ = State::done;
                step.consumed = i + 1;
                return std::nullopt;
            case State::done: step.consumed = i; return std::nullopt;
        }
        if (state_ == State::size || state_ == State::size_space || state_ == State::extension) {
            if (++line_bytes_ > kMaxChunkLine) { return "chunk-size line too long"; }
        }
        ++i;
    }
    step.consumed = i;
    return std::nullopt;
}

std::optional<std::string_view> gather(BodyReader& body, std::string_view input, const Step& first,
                                       std::span<char> scratch, Step& out) {
    const std::size_t start = std::min(first.data.size(), scratch.size());
    std::copy_n(first.data.data(), start, scratch.data());
    std::size_t used = start;
    std::size_t consumed = first.consumed;
    while (consumed < input.size() && !body.done() && used < scratch.size()) {
        Step more;
        if (auto bad = body.next(input.substr(consumed, scratch.size() - used), more)) { return bad; }
        if (more.consumed == 0) { break; }
        consumed += more.consumed;
        std::copy(more.data.begin(), more.data.end(), scratch.begin() + static_cast<std::ptrdiff_t>(used));
        used += more.data.size();
    }
    out.consumed = consumed;
    out.data = std::string_view(scratch.data(), used);
    return std::nullopt;
}

}  // namespace drover::proxy::http_body
