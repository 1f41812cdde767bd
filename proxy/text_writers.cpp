#include "proxy/text_writers.hpp"

#include <fmt/format.h>

#include <cmath>

namespace drover::proxy {

namespace {

void append_escaped_label(std::string& out, std::string_view value) {
    for (char c : value) {
        switch (c) {
            case '\\': out += "\\\\"; break;
            case '"': out += "\\\""; break;
            case '\n': out += "\\n"; break;
            default: out += c;
        }
    }
}

void append_json_string(std::string& out, std::string_view text) {
    out += '"';
    for (unsigned char c : text) {
        switch (c) {
            case '"': out += "\\\""; break;
            case '\\': out += "\\\\"; break;
            case '\n': out += "\\n"; break;
            case '\r': out += "\\r"; break;
            case '\t': out += "\\t"; break;
            default:
                if (c < 0x20) {
                    out += fmt::format("\\u{:04x}", c);
                } else {
                    out += static_cast<char>(c);
                }
        }
    }
    out += '"';
}

}  // namespace

void PrometheusWriter::family(std::string_view name, std::string_view type, std::string_view help) {
    fmt::format_to(std::back_inserter(out_), "# HELP {} {}\n# TYPE {} {}\n", name, help, name, type);
}

void PrometheusWriter::labels(Labels labels) {
    if (labels.size() == 0) { return; }
    out_ += '{';
    bool first = true;
    for (const auto& [k, v] : labels) {
        if (!first) { out_ += ','; }
        first = false;
        out_ += k;
        out_ += "=\"";
        append_escaped_label(out_, v);
        out_ += '"';
    }
    out_ += '}';
}

void PrometheusWriter::sample(std::string_view name, Labels l, double value) {
    out_ += name;
    labels(l);
    if (std::isnan(value)) {
        out_ += " NaN\n";
    } else if (std::isinf(value)) {
        out_ += value > 0 ? " +Inf\n" : " -Inf\n";
    } else {
        fmt::format_to(std::back_inserter(out_), " {}\n", value);
    }
}

void PrometheusWriter::sample(std::string_view name, Labels l, std::uint64_t value) {
    out_ += name;
    labels(l);
    fmt::format_to(std::back_inserter(out_), " {}\n", value);
}

void PrometheusWriter::sample(std::string_view name, Labels l, std::int64_t value) {
    out_ += name;
    labels(l);
    fmt::format_to(std::back_inserter(out_), " {}\n", value);
}

void JsonWriter::separate() {
    if (need_comma_) { out_ += ','; }
    need_comma_ = true;
}

JsonWriter& JsonWriter::begin_object() {
    separate();
    out_ += '{';
    need_comma_ = false;
    return *this;
}

JsonWriter& JsonWriter::end_object() {
    out_ += '}';
    need_comma_ = true;
    return *this;
}

JsonWriter& JsonWriter::begin_array() {
    separate();
    out_ += '[';
    need_comma_ = false;
    return *this;
}

JsonWriter& JsonWriter::end_array() {
    out_ += ']';
    need_comma_ = true;
    return *this;
}

JsonWriter& JsonWriter::key(std::string_view name) {
    separate();
    append_json_string(out_, name);
    out_ += ':';
    need_comma_ = false;
    return *this;
}

JsonWriter& JsonWriter::value(std::string_view text) {
    separate();
    append_json_string(out_, text);
    return *this;
}

JsonWriter& JsonWriter::value(std::int64_t number) {
    separate();
    fmt::format_to(std::back_inserter(out_), "{}", number);
    return *this;
}

JsonWriter& JsonWriter::value(std::uint64_t number) {
    separate();
    fmt::format_to(std::back_inserter(out_), "{}", number);
    return *this;
}

JsonWriter& JsonWriter::value(double number) {
    separate();
    if (std::isfinite(number)) {
        fmt::format_to(std::back_inserter(out_), "{}", number);
    } else {
        out_ += "null";
    }
    return *this;
}

JsonWriter& JsonWriter::value(bool flag) {
    separate();
    out_ += flag ? "true" : "false";
    return *this;
}

}  // namespace drover::proxy
