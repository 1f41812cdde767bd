#pragma once
// Small writers for the admin endpoint's two formats: Prometheus text exposition (0.0.4) and JSON.
// Just enough of each to render our own state correctly (escaping included); no parsing.

#include <cstdint>
#include <initializer_list>
#include <string>
#include <string_view>
#include <utility>

namespace drover::proxy {

class PrometheusWriter {
public:
    using Labels = std::initializer_list<std::pair<std::string_view, std::string_view>>;

    // Declares a family once (HELP and TYPE lines); samples of it may follow.
    void family(std::string_view name, std::string_view type, std::string_view help);
    void sample(std::string_view name, Labels labels, double value);
    void sample(std::string_view name, Labels labels, std::uint64_t value);
    void sample(std::string_view name, Labels labels, std::int64_t value);

    const std::string& text() const { return out_; }

private:
    void labels(Labels labels);
    std::string out_;
};

class JsonWriter {
public:
    JsonWriter& begin_object();
    JsonWriter& end_object();
    JsonWriter& begin_array();
    JsonWriter& end_array();
    JsonWriter& key(std::string_view name);
    JsonWriter& value(std::string_view text);
    JsonWriter& value(const char* text) { return value(std::string_view(text)); }
    JsonWriter& value(std::int64_t number);
    JsonWriter& value(std::uint64_t number);
    JsonWriter& value(double number);
    JsonWriter& value(bool flag);

    std::string take() { return std::move(out_) + "\n"; }

private:
    void separate();
    std::string out_;
    bool need_comma_ = false;
};

}  // namespace drover::proxy
