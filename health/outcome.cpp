#include "health/outcome.hpp"

namespace drover::health {

std::string_view to_string(Outcome outcome) {
    switch (outcome) {
        case Outcome::success: return "success";
        case Outcome::connect_failed: return "connect_failed";
        case Outcome::timeout: return "timeout";
        case Outcome::reset: return "reset";
        case Outcome::bad_response: return "bad_response";
        case Outcome::status_5xx: return "status_5xx";
    }
    return "unknown";
}

std::string_view to_string(Origin origin) {
    switch (origin) {
        case Origin::none: return "none";
        case Origin::local: return "local_origin";
        case Origin::backend: return "backend_origin";
    }
    return "unknown";
}

}  // namespace drover::health
