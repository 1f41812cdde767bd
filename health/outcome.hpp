#pragma once
// The result of one upstream attempt, as the data path reports it. Outlier detection and retries both
// read this one small enum (STYLE rule 7), so "what went wrong" is spelled the same everywhere.
//
// Local origin: the failure was seen at the transport (we could not connect, the connection was reset,
// the attempt timed out). Backend origin: the host answered, but badly (unparseable, or a 5xx). They are
// counted apart because they mean different things: a local-origin streak says "the machine or the path
// to it is gone", a backend-origin streak says "the process is up but sick".

#include <cstdint>
#include <string_view>

namespace drover::health {

enum class Outcome : std::uint8_t { success, connect_failed, timeout, reset, bad_response, status_5xx };

enum class Origin : std::uint8_t { none, local, backend };

constexpr Origin origin_of(Outcome outcome) {
    switch (outcome) {
        case Outcome::success: return Origin::none;
        case Outcome::connect_failed:
        case Outcome::timeout:
        case Outcome::reset: return Origin::local;
        case Outcome::bad_response:
        case Outcome::status_5xx: return Origin::backend;
    }
    return Origin::none;
}

std::string_view to_string(Outcome outcome);
std::string_view to_string(Origin origin);

}  // namespace drover::health
