#include "config/loader.hpp"

#include <arpa/inet.h>
#include <fmt/format.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <sys/stat.h>
#include <unistd.h>
#include <yaml-cpp/depthguard.h>
#include <yaml-cpp/yaml.h>

#include <algorithm>
#include <array>
#include <cctype>
#include <cerrno>
#include <charconv>
#include <cstdio>
#include <filesystem>
#include <initializer_list>
#include <limits>
#include <map>
#include <memory>
#include <system_error>
#include <utility>
#include <vector>

#include "config/host_syntax.hpp"

// Reading is one pass over the YAML tree with a Cursor (a node plus its key path and marks) that reports
// every problem to a shared Diagnostics and carries on, so one run lists all errors. Cross-references
// (unique names, listener addresses, cluster names used by listeners) are checked after the pass.

namespace drover::config {
namespace {

// ---------------------------------------------------------------------------------------------------
// Value parsers. Each returns the value or a message phrased for the user; the public parse_* functions
// keep only the value.
// ---------------------------------------------------------------------------------------------------
template <class T>
struct Parsed {
    std::optional<T> value;
    std::string error;   // set iff !value
};

template <class T>
Parsed<T> failed(std::string message) {
    return Parsed<T>{std::nullopt, std::move(message)};
}

bool is_digit(char c) { return c >= '0' && c <= '9'; }

// A leading decimal number "12" or "12.5" and whatever follows it.
struct Decimal {
    std::string_view whole;
    std::string_view fraction;   // digits after the '.', empty if none
    std::string_view number;     // whole[.fraction], as written
    std::string_view rest;
};

std::optional<Decimal> split_decimal(std::string_view text) {
    std::size_t i = 0;
    while (i < text.size() && is_digit(text[i])) { ++i; }
    if (i == 0) { return std::nullopt; }
    Decimal d;
    d.whole = text.substr(0, i);
    if (i < text.size() && text[i] == '.') {
        std::size_t j = i + 1;
        while (j < text.size() && is_digit(text[j])) { ++j; }
        if (j == i + 1) { return std::nullopt; }
        d.fraction = text.substr(i + 1, j - i - 1);
        i = j;
    }
    d.number = text.substr(0, i);
    d.rest = text.substr(i);
    return d;
}

template <class T>
std::optional<T> whole_number(std::string_view digits) {
    T value{};
    const auto [end, ec] = std::from_chars(digits.data(), digits.data() + digits.size(), value);
    if (ec != std::errc{} || end != digits.data() + digits.size()) { return std::nullopt; }
    return value;
}

Parsed<Duration> duration_of(std::string_view text) {
    const auto d = split_decimal(text);
    if (!d) {
        return failed<Duration>(fmt::format("invalid duration '{}' (e.g. 250ms, 1s, 1.5s, 5m, 1h)", text));
    }
    if (d->rest.empty()) { return failed<Duration>("duration needs a unit, e.g. 500ms"); }
    std::int64_t unit_ms = 0;
    if (d->rest == "ms") {
        unit_ms = 1;
    } else if (d->rest == "s") {
        unit_ms = 1000;
    } else if (d->rest == "m") {
        unit_ms = 60 * 1000;
    } else if (d->rest == "h") {
        unit_ms = 60 * 60 * 1000;
    } else {
        return failed<Duration>(fmt::format("unknown duration unit '{}' (use ms, s, m or h)", d->rest));
    }
    // A year is more than any timeout or interval means. Larger values would also overflow the
    // nanosecond clocks the timers add them to (about 292 years), and a deadline that wraps into the
    // past fires at once: the opposite of what was asked for.
    constexpr std::int64_t kMaxMs = 8760LL * 60 * 60 * 1000;
    const auto too_large = [&] {
        return failed<Duration>(fmt::format("duration '{}' is too large (at most 8760h, a year)", text));
    };
    if (d->whole.size() > 12) { return too_large(); }
    if (d->fraction.size() > 9) {
        return failed<Duration>(fmt::format("duration '{}' is not a whole number of milliseconds", text));
    }
    const std::int64_t whole = *whole_number<std::int64_t>(d->whole);
    std::int64_t fraction = 0;
    std::int64_t scale = 1;
    if (!d->fraction.empty()) {
        fraction = *whole_number<std::int64_t>(d->fraction);
        for (std::size_t i = 0; i < d->fraction.size(); ++i) { scale *= 10; }
    }
    // Integer arithmetic so that "1.001s" is exactly 1001ms, never 1000.999...
    if ((fraction * unit_ms) % scale != 0) {
        return failed<Duration>(fmt::format("duration '{}' is not a whole number of milliseconds", text));
    }
    const std::int64_t ms = whole * unit_ms + fraction * unit_ms / scale;
    if (ms > kMaxMs) { return too_large(); }
    return Parsed<Duration>{Duration{ms}, {}};
}

Parsed<std::uint64_t> size_of(std::string_view text) {
    const auto bad = [&] {
        return failed<std::uint64_t>(fmt::format("invalid size '{}' (e.g. 1024, 64KiB, 1MiB, 1GB)", text));
    };
    const auto d = split_decimal(text);
    if (!d || !d->fraction.empty()) { return bad(); }
    // "64 KiB" reads naturally, so one run of spaces may separate number and unit.
    std::string_view unit = d->rest;
    while (!unit.empty() && unit.front() == ' ') { unit.remove_prefix(1); }
    if (unit.empty() && !d->rest.empty()) { return bad(); }
    static constexpr std::array<std::pair<std::string_view, std::uint64_t>, 8> kUnits{{
        {"", 1},
        {"B", 1},
        {"KiB", 1024ULL},
        {"MiB", 1024ULL * 1024},
        {"GiB", 1024ULL * 1024 * 1024},
        {"KB", 1000ULL},
        {"MB", 1000ULL * 1000},
        {"GB", 1000ULL * 1000 * 1000},
    }};
    const auto it =
        std::find_if(kUnits.begin(), kUnits.end(), [&](const auto& u) { return u.first == unit; });
    if (it == kUnits.end()) {
        return failed<std::uint64_t>(
            fmt::format("unknown size unit '{}' (use B, KiB, MiB, GiB, KB, MB or GB)", unit));
    }
    const auto number = whole_number<std::uint64_t>(d->whole);
    std::uint64_t bytes = 0;
    if (!number || __builtin_mul_overflow(*number, it->second, &bytes)) {
        return failed<std::uint64_t>(fmt::format("size '{}' is too large", text));
    }
    return Parsed<std::uint64_t>{bytes, {}};
}

// A percentage from `lo`% to `hi`%, as a fraction.
Parsed<double> percent_in(std::string_view text, int lo, int hi) {
    const bool negative = !text.empty() && text.front() == '-';
    const auto d = split_decimal(negative ? text.substr(1) : text);
    if (!d) { return failed<double>(fmt::format("invalid percentage '{}' (e.g. 50%)", text)); }
    if (d->rest.empty()) { return failed<double>("percentage needs a '%', e.g. 50%"); }
    if (d->rest != "%") { return failed<double>(fmt::format("invalid percentage '{}' (e.g. 50%)", text)); }
    double value = 0;
    const auto [end, ec] = std::from_chars(d->number.data(), d->number.data() + d->number.size(), value);
    if (ec != std::errc{} || end != d->number.data() + d->number.size()) {
        return failed<double>(fmt::format("invalid percentage '{}' (e.g. 50%)", text));
    }
    if (negative || value < lo || value > hi) {
        return failed<double>(fmt::format("percentage must be between {}% and {}%", lo, hi));
    }
    return Parsed<double>{value / 100.0, {}};
}

Parsed<double> percent_of(std::string_view text) { return percent_in(text, 0, 100); }

// priority_overprovisioning: 100% (a group keeps only its available share) to 10000% (strict failover
// unless under 1% of a group is up).
Parsed<double> overprovisioning_of(std::string_view text) { return percent_in(text, 100, 10000); }

// "::ffff:10.0.0.1" (an IPv4-mapped IPv6 address in canonical form) -> "10.0.0.1"; else "".
std::string_view ipv4_of_mapped(std::string_view host) {
    constexpr std::string_view kMapped = "::ffff:";
    return host.starts_with(kMapped) && host.find('.') != std::string_view::npos ? host.substr(kMapped.size())
                                                                                 : std::string_view{};
}

Parsed<Address> address_of(std::string_view text) {
    if (text.empty()) { return failed<Address>("expected an address, e.g. 127.0.0.1:8080"); }
    std::string_view host;
    std::string_view port;
    bool bracketed = false;
    if (text.front() == '[') {
        const auto close = text.find(']');
        if (close == std::string_view::npos) {
            return failed<Address>(fmt::format("invalid address '{}' (missing ']')", text));
        }
        host = text.substr(1, close - 1);
        const auto after = text.substr(close + 1);
        if (after.empty()) { return failed<Address>("address needs a port, e.g. [::1]:8080"); }
        if (after.front() != ':') { return failed<Address>(fmt::format("invalid address '{}'", text)); }
        port = after.substr(1);
        bracketed = true;
    } else {
        const auto colon = text.rfind(':');
        if (colon == std::string_view::npos) {
            if (text.find_first_not_of("0123456789.") != std::string_view::npos) {
                return failed<Address>(
                    fmt::format("'{}' must be an IP address and port; use discovery.dns for names", text));
            }
            return failed<Address>("address needs a port, e.g. 127.0.0.1:8080");
        }
        host = text.substr(0, colon);
        port = text.substr(colon + 1);
        if (host.find(':') != std::string_view::npos) {
            return failed<Address>("IPv6 addresses need brackets, e.g. [::1]:8080");
        }
    }
    const auto port_number = whole_number<std::uint32_t>(port);
    if (port.empty() || port.size() > 5 || !port_number || *port_number > 65535) {
        return failed<Address>(fmt::format("invalid port '{}' (0 to 65535)", port));
    }
    const std::string host_text{host};
    std::array<unsigned char, sizeof(in6_addr)> binary{};
    const int family = bracketed ? AF_INET6 : AF_INET;
    if (inet_pton(family, host_text.c_str(), binary.data()) != 1) {
        const bool looks_like_name =
            !bracketed && host.find_first_not_of("0123456789.") != std::string_view::npos;
        if (looks_like_name) {
            return failed<Address>(
                fmt::format("'{}' must be an IP address; use discovery.dns for names", host_text));
        }
        return failed<Address>(fmt::format("invalid IP address '{}'", host_text));
    }
    // Stored in canonical form so that "[::0001]:80" and "[::1]:80" compare equal.
    std::array<char, INET6_ADDRSTRLEN> canonical{};
    if (inet_ntop(family, binary.data(), canonical.data(), canonical.size()) == nullptr) {
        return failed<Address>(fmt::format("invalid IP address '{}'", host_text));
    }
    return Parsed<Address>{Address{canonical.data(), static_cast<std::uint16_t>(*port_number)}, {}};
}

std::string format_duration(Duration d) {
    const auto ms = d.count();
    if (ms != 0 && ms % (60 * 60 * 1000) == 0) { return fmt::format("{}h", ms / (60 * 60 * 1000)); }
    if (ms != 0 && ms % (60 * 1000) == 0) { return fmt::format("{}m", ms / (60 * 1000)); }
    if (ms % 1000 == 0) { return fmt::format("{}s", ms / 1000); }
    return fmt::format("{}ms", ms);
}

std::size_t edit_distance(std::string_view a, std::string_view b) {
    std::vector<std::size_t> row(b.size() + 1);
    for (std::size_t j = 0; j <= b.size(); ++j) { row[j] = j; }
    for (std::size_t i = 1; i <= a.size(); ++i) {
        std::size_t diagonal = row[0];
        row[0] = i;
        for (std::size_t j = 1; j <= b.size(); ++j) {
            const std::size_t above = row[j];
            row[j] = std::min({row[j] + 1, row[j - 1] + 1, diagonal + (a[i - 1] == b[j - 1] ? 0 : 1)});
            diagonal = above;
        }
    }
    return row[b.size()];
}

// " (did you mean 'x'?)" when a candidate is within two edits of the word, else "".
template <class Range>
std::string suggestion(std::string_view word, const Range& candidates) {
    std::string_view best;
    std::size_t best_distance = 3;
    for (const auto& candidate : candidates) {
        const std::size_t distance = edit_distance(word, candidate);
        if (distance < best_distance) {
            best = candidate;
            best_distance = distance;
        }
    }
    return best.empty() ? std::string{} : fmt::format(" (did you mean '{}'?)", best);
}

// ---------------------------------------------------------------------------------------------------
// Error collection.
// ---------------------------------------------------------------------------------------------------

// Collects the errors of one load; knows the file name marks point into.
class Diagnostics {
public:
    explicit Diagnostics(std::string file) : file_(std::move(file)) {}

    const std::string& file() const { return file_; }

    // yaml-cpp counts from 0 and uses -1 for "no position"; users count from 1.
    Mark mark(const YAML::Mark& m) const {
        if (m.is_null() || m.line < 0) { return Mark{file_, 0, 0}; }
        return Mark{file_, m.line + 1, m.column + 1};
    }

    void error(Mark mark, std::string path, std::string message) {
        errors_.push_back(ConfigError{std::move(mark), std::move(path), std::move(message)});
    }

    void warning(Mark mark, std::string path, std::string message) {
        warnings_.push_back(ConfigError{std::move(mark), std::move(path), std::move(message), true});
    }

    std::vector<ConfigError> take() { return in_file_order(std::move(errors_)); }
    std::vector<ConfigError> take_warnings() { return in_file_order(std::move(warnings_)); }

private:
    // Cross-reference checks run last; present everything in file order.
    static std::vector<ConfigError> in_file_order(std::vector<ConfigError> list) {
        std::stable_sort(list.begin(), list.end(), [](const ConfigError& a, const ConfigError& b) {
            return std::pair{a.mark.line, a.mark.column} < std::pair{b.mark.line, b.mark.column};
        });
        return list;
    }

    std::string file_;
    std::vector<ConfigError> errors_;
    std::vector<ConfigError> warnings_;
};

class Fields;

// One value in the document: its node, its key path, and where its key is. Reads report problems to
// the Diagnostics and return nullopt, so callers simply keep the default and carry on.
class Cursor {
public:
    Cursor(Diagnostics& diag, YAML::Node node, std::string path, Mark key_mark)
        : diag_(&diag), node_(std::move(node)), path_(std::move(path)), key_mark_(std::move(key_mark)) {}

    Diagnostics& diag() const { return *diag_; }
    const YAML::Node& node() const { return node_; }
    const std::string& path() const { return path_; }
    const Mark& key_mark() const { return key_mark_; }

    // Where the value is. An empty value ("key:" and nothing) has no useful position of its own:
    // yaml-cpp points at the next token, possibly lines later, so use the key's.
    Mark mark() const { return node_.IsNull() ? key_mark_ : diag_->mark(node_.Mark()); }

    void error(std::string message) const { diag_->error(mark(), path_, std::move(message)); }
    void key_error(std::string message) const { diag_->error(key_mark_, path_, std::move(message)); }
    void key_warning(std::string message) const { diag_->warning(key_mark_, path_, std::move(message)); }

    // The scalar text, or an error "expected <what>".
    std::optional<std::string> scalar(std::string_view what) const {
        if (!node_.IsScalar()) {
            error(fmt::format("expected {}", what));
            return std::nullopt;
        }
        return node_.Scalar();
    }

    std::optional<std::string> string() const { return scalar("a string"); }

    std::optional<std::int64_t> integer(std::int64_t lo, std::int64_t hi) const {
        const auto text = scalar("an integer");
        if (!text) { return std::nullopt; }
        const auto value = whole_number<std::int64_t>(*text);
        if (!value) {
            error(fmt::format("expected an integer, got '{}'", *text));
            return std::nullopt;
        }
        if (*value < lo || *value > hi) {
            // A bound that is only the field's type limit is not worth quoting unless it was crossed.
            const bool bounded = hi < std::numeric_limits<std::uint32_t>::max();
            if (bounded) {
                error(fmt::format("must be between {} and {}", lo, hi));
            } else if (*value > hi) {
                error(fmt::format("must be at most {}", hi));
            } else {
                error(lo == 0 ? std::string{"must not be negative"} : fmt::format("must be at least {}", lo));
            }
            return std::nullopt;
        }
        return value;
    }

    std::optional<bool> boolean() const {
        const auto text = scalar("true or false");
        if (!text) { return std::nullopt; }
        if (*text == "true" || *text == "True" || *text == "TRUE") { return true; }
        if (*text == "false" || *text == "False" || *text == "FALSE") { return false; }
        error(fmt::format("expected true or false, got '{}'", *text));
        return std::nullopt;
    }

    std::optional<Duration> duration() const { return parsed(scalar("a duration, e.g. 500ms"), duration_of); }
    std::optional<std::uint64_t> size() const { return parsed(scalar("a size, e.g. 64KiB"), size_of); }
    std::optional<double> percent() const { return parsed(scalar("a percentage, e.g. 50%"), percent_of); }
    std::optional<double> overprovisioning() const {
        return parsed(scalar("a percentage, e.g. 140%"), overprovisioning_of);
    }

    // `to_listen`: an address Drover binds (a listener, admin), where port 0 picks a free port.
    std::optional<Address> address(bool to_listen) const {
        auto value = parsed(scalar("an address, e.g. 127.0.0.1:8080"), address_of);
        if (value && value->port == 0 && !to_listen) {
            error("port 0 is not valid here");
            return std::nullopt;
        }
        if (value && to_listen && !ipv4_of_mapped(value->host).empty()) {
            // IPv6 sockets are IPv6-only here, so no IPv4 connection could reach it: bind fails.
            error(fmt::format("{} is an IPv4-mapped IPv6 address, which cannot be listened on: write {}:{}",
                              value->str(), ipv4_of_mapped(value->host), value->port));
            return std::nullopt;
        }
        return value;
    }

    // One of a fixed set of words.
    template <class E>
    std::optional<E> one_of(std::initializer_list<std::pair<std::string_view, E>> choices) const {
        const auto text = scalar("a string");
        if (!text) { return std::nullopt; }
        for (const auto& [word, value] : choices) {
            if (*text == word) { return value; }
        }
        std::vector<std::string_view> words;
        std::string listed;
        for (const auto& choice : choices) {
            words.push_back(choice.first);
            listed += listed.empty() ? "" : ", ";
            listed += choice.first;
        }
        error(fmt::format("'{}' is not one of {}{}", *text, listed, suggestion(*text, words)));
        return std::nullopt;
    }

    // A map with exactly these keys allowed; unknown and duplicate keys are reported here, once.
    // An empty value counts as an empty map.
    std::optional<Fields> map(std::initializer_list<std::string_view> allowed) const;

    // The items of a list; an empty value counts as an empty list.
    std::vector<Cursor> list() const {
        std::vector<Cursor> items;
        if (node_.IsNull()) { return items; }
        if (!node_.IsSequence()) {
            error("expected a list");
            return items;
        }
        std::size_t index = 0;
        for (const auto& item : node_) {
            const Mark item_mark = diag_->mark(item.Mark());
            items.emplace_back(*diag_, item, fmt::format("{}[{}]", path_, index++), item_mark);
        }
        return items;
    }

private:
    template <class T>
    std::optional<T> parsed(const std::optional<std::string>& text,
                            Parsed<T> (*parse)(std::string_view)) const {
        if (!text) { return std::nullopt; }
        auto result = parse(*text);
        if (!result.value) { error(std::move(result.error)); }
        return result.value;
    }

    Diagnostics* diag_;
    YAML::Node node_;
    std::string path_;
    Mark key_mark_;
};

// A map whose keys were checked against the allowed set. Lookups by key; helpers read a key into a
// field when it is present and valid, leaving the default otherwise.
class Fields {
public:
    Fields(Cursor self, std::vector<std::pair<std::string, Cursor>> entries)
        : self_(std::move(self)), entries_(std::move(entries)) {}

    const Cursor& self() const { return self_; }
    Diagnostics& diag() const { return self_.diag(); }

    std::string path_of(std::string_view key) const {
        return self_.path().empty() ? std::string{key} : fmt::format("{}.{}", self_.path(), key);
    }

    std::optional<Cursor> get(std::string_view key) const {
        const auto it =
            std::find_if(entries_.begin(), entries_.end(), [&](const auto& e) { return e.first == key; });
        return it == entries_.end() ? std::nullopt : std::optional<Cursor>{it->second};
    }

    bool has(std::string_view key) const { return get(key).has_value(); }

    // Those of `keys` that are present, in file order, for "exactly one of" choices: the one written
    // first wins and later ones are the errors.
    std::vector<std::pair<std::string_view, Cursor>> present(
        std::initializer_list<std::string_view> keys) const {
        std::vector<std::pair<std::string_view, Cursor>> found;
        for (const auto& [key, cursor] : entries_) {
            if (std::find(keys.begin(), keys.end(), key) != keys.end()) { found.emplace_back(key, cursor); }
        }
        return found;
    }

    // The key, or an error "missing required key" at the map.
    std::optional<Cursor> require(std::string_view key) const {
        auto found = get(key);
        if (!found) { error_at(key, fmt::format("missing required key '{}'", key)); }
        return found;
    }

    // An error about `key`: at its value when present, else at this map.
    void error_at(std::string_view key, std::string message) const {
        const auto found = get(key);
        diag().error(found ? found->mark() : self_.mark(), path_of(key), std::move(message));
    }

    void read_string(std::string_view key, std::string& out) const {
        if (const auto c = get(key)) {
            if (auto v = c->string()) { out = std::move(*v); }
        }
    }

    // `positive`: a zero duration would mean "never wait" or "always expire", which no setting wants.
    void read_duration(std::string_view key, Duration& out, bool positive) const {
        if (const auto c = get(key)) {
            if (const auto v = c->duration()) {
                if (positive && v->count() == 0) {
                    c->error("must be greater than 0");
                } else {
                    out = *v;
                }
            }
        }
    }

    void read_size(std::string_view key, std::uint64_t& out, std::uint64_t min) const {
        if (const auto c = get(key)) {
            if (const auto v = c->size()) {
                if (*v < min) {
                    c->error(fmt::format("must be at least {}", min));
                } else {
                    out = *v;
                }
            }
        }
    }

    void read_percent(std::string_view key, double& out) const {
        if (const auto c = get(key)) {
            if (const auto v = c->percent()) { out = *v; }
        }
    }

    template <class T>
    void read_integer(std::string_view key, T& out, std::int64_t lo,
                      std::int64_t hi = std::numeric_limits<std::int64_t>::max()) const {
        const auto type_max = static_cast<std::int64_t>(
            std::min<std::uint64_t>(std::numeric_limits<T>::max(), std::numeric_limits<std::int64_t>::max()));
        if (const auto c = get(key)) {
            if (const auto v = c->integer(lo, std::min(hi, type_max))) { out = static_cast<T>(*v); }
        }
    }

private:
    Cursor self_;
    std::vector<std::pair<std::string, Cursor>> entries_;
};

std::optional<Fields> Cursor::map(std::initializer_list<std::string_view> allowed) const {
    std::vector<std::pair<std::string, Cursor>> entries;
    if (node_.IsNull()) { return Fields{*this, std::move(entries)}; }
    if (!node_.IsMap()) {
        error("expected a map");
        return std::nullopt;
    }
    const auto child_path = [&](std::string_view key) {
        return path_.empty() ? std::string{key} : fmt::format("{}.{}", path_, key);
    };
    // yaml-cpp 0.7 keeps every pair of a map, duplicates included, so they can be reported here.
    for (const auto& pair : node_) {
        const Mark key_mark = diag_->mark(pair.first.Mark());
        if (!pair.first.IsScalar()) {
            diag_->error(key_mark, path_, "expected a string key");
            continue;
        }
        const std::string& key = pair.first.Scalar();
        if (key == "<<") {
            // yaml-cpp 0.7 reads a merge key as an ordinary key named "<<"; say so rather than "unknown".
            diag_->error(key_mark, child_path(key),
                         "YAML merge keys ('<<') are not supported; "
                         "write the keys out, or alias a whole value");
            continue;
        }
        if (std::find(allowed.begin(), allowed.end(), key) == allowed.end()) {
            diag_->error(key_mark, child_path(key),
                         fmt::format("unknown key '{}'{}", key, suggestion(key, allowed)));
            continue;
        }
        const auto seen =
            std::find_if(entries.begin(), entries.end(), [&](const auto& e) { return e.first == key; });
        if (seen != entries.end()) {
            diag_->error(
                key_mark, child_path(key),
                fmt::format("duplicate key '{}' (first at line {}, column {})", key, seen->second.key_mark().line,
                            seen->second.key_mark().column));
            continue;
        }
        Cursor child{*diag_, pair.second, child_path(key), key_mark};
        entries.emplace_back(key, std::move(child));
    }
    return Fields{*this, std::move(entries)};
}

// ---------------------------------------------------------------------------------------------------
// The schema: one reader per section of CONFIG.md.
// ---------------------------------------------------------------------------------------------------

// `[::1]:80` unquoted in a flow list reads as a map from the list [::1] to 80: what was written, or
// "" when `node` is something else.
std::string unquoted_ipv6(const YAML::Node& node) {
    if (!node.IsMap() || node.size() != 1) { return {}; }
    const auto pair = *node.begin();
    if (!pair.first.IsSequence() || pair.first.size() != 1 || !pair.first[0].IsScalar() || !pair.second.IsScalar()) {
        return {};
    }
    const std::string& inside = pair.first[0].Scalar();
    if (inside.find(':') == std::string::npos) { return {}; }
    return fmt::format("[{}]:{}", inside, pair.second.Scalar());
}

// A list of endpoints, each an address or { address, weight }: `discovery.static` in the config and
// `endpoints` in an endpoints file. `what` names the list in the "needs at least one" error.
std::optional<std::vector<StaticEndpoint>> read_endpoint_list(const Cursor& c, std::string_view what) {
    const auto items = c.list();
    if (items.empty()) {
        if (c.node().IsNull() || c.node().IsSequence()) {
            c.error(fmt::format("{} needs at least one address", what));
        }
        return std::nullopt;
    }
    std::vector<StaticEndpoint> endpoints;
    std::map<std::pair<std::string, std::uint16_t>, Mark> seen;   // an orchestrator's file may list thousands
    for (const auto& item : items) {
        StaticEndpoint endpoint;
        std::optional<Cursor> address_cursor;
        if (const auto written = unquoted_ipv6(item.node()); !written.empty()) {
            item.error(fmt::format("an IPv6 address must be quoted in YAML: \"{}\"", written));
            continue;
        }
        if (item.node().IsMap()) {
            const auto f = item.map({"address", "weight"});
            if (!f) { continue; }
            address_cursor = f->require("address");
            f->read_integer("weight", endpoint.weight, 1, 10000);
        } else if (item.node().IsScalar()) {
            address_cursor = item;
        } else {
            item.error("expected an address or { address, weight }");
            continue;
        }
        if (!address_cursor) { continue; }
        const auto address = address_cursor->address(false);
        if (!address) { continue; }
        // "[::ffff:10.0.0.1]:80" is 10.0.0.1:80 under another name: one host, listed twice.
        const auto mapped = ipv4_of_mapped(address->host);
        const auto [twin, first] =
            seen.try_emplace({mapped.empty() ? address->host : std::string(mapped), address->port}, address_cursor->mark());
        if (!first) {
            address_cursor->error(fmt::format("{} is listed twice (first at line {}); use weight instead",
                                              address->str(), twin->second.line));
            continue;
        }
        endpoint.address = *address;
        endpoints.push_back(endpoint);
    }
    return endpoints;
}

// A name for SNI and certificate checks: a DNS name (labels of letters, digits, '-' and '_', at most
// 253 bytes; a final dot allowed), or an IPv4 or IPv6 literal (checked against IP SANs, not sent).
bool valid_server_name(std::string_view name) {
    if (name.empty() || name.size() > 254) { return false; }
    in6_addr v6{};
    in_addr v4{};
    const std::string text(name);
    if (::inet_pton(AF_INET, text.c_str(), &v4) == 1 || ::inet_pton(AF_INET6, text.c_str(), &v6) == 1) { return true; }
    if (name.back() == '.') { name.remove_suffix(1); }
    std::size_t start = 0;
    while (start <= name.size()) {
        const std::size_t dot = std::min(name.find('.', start), name.size());
        const std::string_view label = name.substr(start, dot - start);
        if (label.empty() || label.size() > 63 || !std::all_of(label.begin(), label.end(), [](char ch) {
                return (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || is_digit(ch) || ch == '-' || ch == '_';
            })) {
            return false;
        }
        start = dot + 1;
    }
    return true;
}

bool is_valid_name(std::string_view name) {
    return !name.empty() && std::all_of(name.begin(), name.end(), [](char c) {
        return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || is_digit(c) || c == '_' || c == '.' ||
               c == '-';
    });
}

// Why `value` cannot be the Host of an http health check, or "" when it can: what a request's Host
// may be (config/host_syntax.hpp), so that nothing a backend would refuse, and no line break that
// would end the field, goes out.
std::string probe_host_problem(std::string_view value) {
    if (is_valid_host(value)) { return {}; }
    if (!value.starts_with('[') && std::count(value.begin(), value.end(), ':') > 1) {
        return fmt::format("host '{}': an IPv6 address needs brackets in a Host, e.g. [::1]", value);
    }
    return fmt::format("host '{}' must be a host name or an IP literal (an IPv6 one in brackets), with an "
                       "optional port of at most 65535",
                       value);
}

// Why `host` cannot be a route's match.host, or "" when it can: "api.example.com", "*.example.com" or
// an IP literal ("10.0.0.1", "[::1]"). Requests are matched on their Host without its port and
// trailing dot (Router::normalize_host), so a route host with a port could never match.
std::string route_host_problem(std::string_view host) {
    const auto usage = [&] {
        return fmt::format("host '{}' must be a name like api.example.com or a wildcard like *.example.com", host);
    };
    if (host.empty() || host.find_first_of(" \t/") != std::string_view::npos) { return usage(); }
    if (host.front() == '[') {
        const bool literal = host.size() > 2 && host.back() == ']' && host.find_first_of("[]*", 1) == host.size() - 1;
        if (!literal) { return usage(); }
        return is_ipv6_address(host.substr(1, host.size() - 2))
                   ? std::string{}
                   : fmt::format("host '{}' is not an IPv6 address (such a Host is refused with 400)", host);
    }
    if (const auto colon = host.find(':'); colon != std::string_view::npos) {
        if (host.find(':', colon + 1) != std::string_view::npos) {
            return fmt::format("host '{}': an IPv6 address needs brackets, e.g. [::1]", host);
        }
        return fmt::format("host '{}': requests are matched on their host without the port; write '{}'", host,
                           host.substr(0, colon));
    }
    if (host.front() == '*') {
        const bool wildcard = host.size() > 2 && host[1] == '.' && host.find('*', 1) == std::string_view::npos;
        return wildcard ? std::string{} : usage();
    }
    return host.find('*') == std::string_view::npos ? std::string{} : usage();
}

// A place in the file that a later cross-check may point at.
struct Site {
    Mark mark;
    std::string path;
};

struct NamedSite {
    std::string name;
    Site site;
};

struct ClusterReference {
    enum class Use { route, route_template, tcp_listener };
    std::string name;
    Site site;
    Use use;
};

struct ListenerAddress {
    std::string listener;
    Address address;
    Site site;
};

// Reads the whole document into a Config, then checks what spans listeners and clusters.
class ConfigReader {
public:
    explicit ConfigReader(Diagnostics& diag) : diag_(diag) {}

    Config read(const Cursor& root) {
        Config config;
        config.source = diag_.file();
        const auto fields =
            root.map({"admin", "workers", "log", "shutdown", "process", "access_log", "listeners", "clusters"});
        if (!fields) { return config; }
        if (const auto c = fields->get("admin")) {
            if (const auto admin = c->map({"address"})) {
                if (const auto a = admin->get("address")) {
                    if (auto v = a->address(true)) {
                        config.admin.address = *v;
                        config.admin.mark = a->mark();
                        admin_site_ = Site{a->mark(), a->path()};
                    }
                }
            }
        }
        if (const auto c = fields->get("workers")) {
            config.workers_mark = c->mark();
            read_workers(*c, config.workers);
        }
        if (const auto c = fields->get("log")) {
            if (const auto log = c->map({"level"})) {
                if (const auto l = log->get("level")) {
                    using Level = LogConfig::Level;
                    if (const auto v = l->one_of<Level>({{"debug", Level::debug},
                                                         {"info", Level::info},
                                                         {"warn", Level::warn},
                                                         {"error", Level::error}})) {
                        config.log.level = *v;
                    }
                }
            }
        }
        if (const auto c = fields->get("access_log")) {
            config.access_log.emplace();
            config.access_log->mark = c->mark();
            if (const auto access = c->map({"path"})) {
                if (const auto p = access->get("path")) {
                    config.access_log->mark = p->mark();
                    if (auto v = p->string()) {
                        if (v->empty()) {
                            p->error("path must be \"stderr\" or a file");
                        } else {
                            config.access_log->path = *v == "stderr" ? *v : resolve_path(*v);
                        }
                    }
                }
            }
        }
        if (const auto c = fields->get("shutdown")) {
            if (const auto shutdown = c->map({"drain_timeout", "idle_grace", "delay"})) {
                shutdown->read_duration("drain_timeout", config.shutdown.drain_timeout, false);
                shutdown->read_duration("idle_grace", config.shutdown.idle_grace, false);
                shutdown->read_duration("delay", config.shutdown.delay, false);
            }
        }
        if (const auto c = fields->get("process")) {
            if (const auto process = c->map({"max_memory"})) {
                process->read_size("max_memory", config.process.max_memory, 0);
            }
        }
        const auto listeners = fields->get("listeners");
        if (listeners) {
            for (const auto& item : listeners->list()) {
                if (auto listener = read_listener(item)) { config.listeners.push_back(std::move(*listener)); }
            }
        }
        config.listeners_mark = listeners ? listeners->mark() : root.mark();
        if (const auto c = fields->get("clusters")) {
            for (const auto& item : c->list()) {
                if (auto cluster = read_cluster(item)) { config.clusters.push_back(std::move(*cluster)); }
            }
        }
        check_unique_names(listener_names_, "listener");
        check_unique_names(cluster_names_, "cluster");
        check_listener_addresses(config.admin.address);
        check_cluster_references();
        check_templates(config);
        check_hash_keys(config);
        return config;
    }

private:
    void read_workers(const Cursor& c, std::uint32_t& out) {
        const auto text = c.scalar("auto or a number of threads");
        if (!text) { return; }
        if (*text == "auto") {
            out = 0;
            return;
        }
        const auto n = whole_number<std::int64_t>(*text);
        if (!n || *n < 1 || *n > 256) {
            c.error(fmt::format("workers must be auto or a number from 1 to 256, got '{}'", *text));
            return;
        }
        out = static_cast<std::uint32_t>(*n);
    }

    void read_name(const Fields& f, std::string& out, std::vector<NamedSite>& names, std::string_view what) {
        const auto c = f.require("name");
        if (!c) { return; }
        const auto name = c->string();
        if (!name) { return; }
        if (!is_valid_name(*name)) {
            c->error(name->empty()
                         ? fmt::format("{} name must not be empty", what)
                         : fmt::format("{} name '{}' may only contain letters, digits, '_', '.' and '-'",
                                       what, *name));
            return;
        }
        out = *name;
        names.push_back(NamedSite{*name, Site{c->mark(), c->path()}});
    }

    // A cluster named by a listener or route; resolved once all clusters are read.
    void read_cluster_reference(const Cursor& c, std::string& out, ClusterReference::Use use) {
        const auto name = c.string();
        if (!name) { return; }
        if (name->empty()) {
            c.error("cluster name must not be empty");
            return;
        }
        out = *name;
        cluster_references_.push_back(ClusterReference{*name, Site{c.mark(), c.path()}, use});
    }

    std::optional<Listener> read_listener(const Cursor& c) {
        const auto f =
            c.map({"name", "address", "protocol", "tls", "routes", "cluster", "limits", "timeouts"});
        if (!f) { return std::nullopt; }
        Listener listener;
        listener.mark = c.mark();
        read_name(*f, listener.name, listener_names_, "listener");
        if (const auto a = f->require("address")) {
            if (const auto v = a->address(true)) {
                listener.address = *v;
                listener_addresses_.push_back(ListenerAddress{listener.name, *v, Site{a->mark(), a->path()}});
            }
        }
        bool protocol_known = true;
        if (const auto p = f->get("protocol")) {
            const auto v = p->one_of<Protocol>({{"http", Protocol::http}, {"tcp", Protocol::tcp}});
            protocol_known = v.has_value();
            if (v) { listener.protocol = *v; }
        }
        if (const auto t = f->get("tls")) { listener.tls = read_listener_tls(*t); }
        if (const auto r = f->get("routes")) {
            for (const auto& item : r->list()) {
                if (auto route = read_route(item)) { listener.routes.push_back(std::move(*route)); }
            }
        }
        if (const auto cl = f->get("cluster")) {
            read_cluster_reference(*cl, listener.cluster, ClusterReference::Use::tcp_listener);
        }

        std::optional<Fields> limits;
        if (const auto l = f->get("limits")) {
            limits = l->map({"max_connections", "max_request_header_bytes", "max_request_body_bytes",
                             "max_request_headers", "max_uri_bytes"});
            if (limits) {
                limits->read_integer("max_connections", listener.limits.max_connections, 1);
                limits->read_size("max_request_header_bytes", listener.limits.max_request_header_bytes, 1);
                limits->read_size("max_request_body_bytes", listener.limits.max_request_body_bytes, 0);
                limits->read_integer("max_request_headers", listener.limits.max_request_headers, 1, 10000);
                std::uint64_t uri = listener.limits.max_uri_bytes;
                limits->read_size("max_uri_bytes", uri, 1);
                listener.limits.max_uri_bytes = static_cast<std::size_t>(uri);
            }
        }
        std::optional<Fields> timeouts;
        if (const auto t = f->get("timeouts")) {
            timeouts = t->map({"request_headers", "idle"});
            if (timeouts) {
                timeouts->read_duration("request_headers", listener.timeouts.request_headers, true);
                timeouts->read_duration("idle", listener.timeouts.idle, true);
            }
        }

        if (!protocol_known) { return listener; }
        if (listener.protocol == Protocol::tcp) {
            if (!f->has("cluster")) { f->error_at("cluster", "tcp listeners need a cluster"); }
            if (const auto r = f->get("routes")) {
                r->key_error("routes apply to http listeners only; a tcp listener names one cluster");
            }
            const auto http_only = [](const std::optional<Fields>& section, std::string_view key) {
                if (!section) { return; }
                if (const auto k = section->get(key)) {
                    k->key_error(fmt::format("{} applies to http listeners only", key));
                }
            };
            http_only(limits, "max_request_header_bytes");
            http_only(limits, "max_request_body_bytes");
            http_only(limits, "max_request_headers");
            http_only(limits, "max_uri_bytes");
            http_only(timeouts, "request_headers");
        } else {
            if (const auto cl = f->get("cluster")) {
                cl->key_error(
                    "cluster applies to tcp listeners only; http listeners name clusters in routes");
            }
            const auto r = f->get("routes");
            if (!r) {
                diag_.error(listener.mark, f->path_of("routes"), "http listeners need at least one route");
            } else if (r->node().IsNull() || (r->node().IsSequence() && r->node().size() == 0)) {
                r->error("http listeners need at least one route");
            }
        }
        return listener;
    }

    std::optional<ListenerTls> read_listener_tls(const Cursor& c) {
        const auto f = c.map({"certificates", "client_ca", "min_version"});
        if (!f) { return std::nullopt; }
        ListenerTls tls;
        tls.mark = c.mark();
        f->read_string("client_ca", tls.client_ca);
        if (f->has("client_ca") && tls.client_ca.empty()) { f->get("client_ca")->error("client_ca must not be empty"); }
        if (!tls.client_ca.empty()) { tls.client_ca = resolve_path(tls.client_ca); }
        if (const auto v = f->get("min_version")) {
            if (const auto text = v->string()) {
                if (*text == "1.2") {
                    tls.min_version = ListenerTls::Version::tls1_2;
                } else if (*text == "1.3") {
                    tls.min_version = ListenerTls::Version::tls1_3;
                } else {
                    v->error(fmt::format("min_version must be \"1.2\" or \"1.3\", not '{}'", *text));
                }
            }
        }
        const auto certificates = f->require("certificates");
        if (!certificates) { return tls; }
        const auto items = certificates->list();
        if (items.empty() && (certificates->node().IsNull() || certificates->node().IsSequence())) {
            certificates->error("certificates needs at least one { cert, key }");
        }
        for (const auto& item : items) {
            const auto cf = item.map({"cert", "key"});
            if (!cf) { continue; }
            TlsCertificate certificate;
            certificate.mark = item.mark();
            for (const auto key : {"cert", "key"}) {
                if (const auto k = cf->require(key)) {
                    if (auto v = k->string()) {
                        if (v->empty()) { k->error(fmt::format("{} must not be empty", key)); }
                        (std::string_view{key} == "cert" ? certificate.cert : certificate.key) = resolve_path(*v);
                    }
                }
            }
            tls.certificates.push_back(std::move(certificate));
        }
        return tls;
    }

    std::optional<Route> read_route(const Cursor& c) {
        const auto f = c.map({"match", "cluster", "cluster_template"});
        if (!f) { return std::nullopt; }
        Route route;
        route.mark = c.mark();
        if (const auto m = f->get("match")) {
            if (const auto mf = m->map({"host", "path_prefix"})) {
                if (const auto h = mf->get("host")) {
                    if (auto v = h->string()) {
                        // "example.com." names example.com, as in a request's Host.
                        if (v->size() > 1 && v->back() == '.') { v->pop_back(); }
                        if (auto problem = route_host_problem(*v); problem.empty()) {
                            route.match.host = std::move(*v);
                        } else {
                            h->error(std::move(problem));
                        }
                    }
                }
                if (const auto p = mf->get("path_prefix")) {
                    if (auto v = p->string()) {
                        if (v->empty() || v->front() != '/') {
                            p->error(fmt::format("path_prefix '{}' must start with '/'", *v));
                        } else {
                            route.match.path_prefix = std::move(*v);
                        }
                    }
                }
            }
        }
        const auto tmpl = f->get("cluster_template");
        if (tmpl) {
            read_cluster_reference(*tmpl, route.cluster_template, ClusterReference::Use::route_template);
            if (const auto cl = f->get("cluster")) { cl->key_error("a route takes cluster or cluster_template, not both"); }
        } else if (const auto cl = f->require("cluster")) {
            read_cluster_reference(*cl, route.cluster, ClusterReference::Use::route);
        }
        return route;
    }

    std::optional<Cluster> read_cluster(const Cursor& c) {
        const auto f = c.map({"name", "discovery", "load_balancing", "hash", "health_check",
                              "outlier_detection", "panic_threshold", "panic_policy", "priority_overprovisioning",
                              "slow_start", "hold_timeout",
                              "retries", "timeouts", "limits", "adaptive_concurrency", "tls", "dynamic"});
        if (!f) { return std::nullopt; }
        std::optional<Fields> dynamic;
        std::uint32_t dynamic_max = 100;
        Duration dynamic_idle = std::chrono::minutes(5);
        if (const auto d = f->get("dynamic")) {
            dynamic = d->map({"max_clusters", "idle_timeout"});
            if (dynamic) {
                dynamic->read_integer("max_clusters", dynamic_max, 1, 10000);
                dynamic->read_duration("idle_timeout", dynamic_idle, true);
            }
        }
        Cluster cluster;
        cluster.mark = c.mark();
        read_name(*f, cluster.name, cluster_names_, "cluster");
        if (const auto d = f->require("discovery")) {
            if (auto v = read_discovery(*d)) { cluster.discovery = std::move(*v); }
        }
        bool policy_known = true;
        if (const auto lb = f->get("load_balancing")) {
            const auto v = lb->one_of<LbPolicy>({{"round_robin", LbPolicy::round_robin},
                                                 {"least_request", LbPolicy::least_request},
                                                 {"random", LbPolicy::random},
                                                 {"maglev", LbPolicy::maglev}});
            policy_known = v.has_value();
            if (v) { cluster.load_balancing = *v; }
        }
        if (const auto h = f->get("hash")) {
            cluster.hash = read_hash(*h);
            if (policy_known && cluster.load_balancing != LbPolicy::maglev) {
                h->key_warning("hash is ignored: only load_balancing: maglev hashes");
                cluster.hash.reset();
            }
            if (cluster.hash && cluster.hash->kind != HashPolicy::Kind::source_ip) {
                keyed_hashes_.push_back(NamedSite{cluster.name, Site{h->key_mark(), h->path()}});
            }
        }
        if (const auto h = f->get("health_check")) {
            if (auto v = read_health_check(*h)) { cluster.health_check = std::move(*v); }
        }
        if (const auto o = f->get("outlier_detection")) {
            if (auto v = read_outlier_detection(*o)) { cluster.outlier_detection = *v; }
        }
        f->read_percent("panic_threshold", cluster.panic_threshold);
        if (const auto p = f->get("panic_policy")) {
            const auto v = p->one_of<PanicPolicy>({{"use_all", PanicPolicy::use_all},
                                                   {"fail_closed", PanicPolicy::fail_closed}});
            if (v) { cluster.panic_policy = *v; }
        }
        if (const auto o = f->get("priority_overprovisioning")) {
            if (const auto v = o->overprovisioning()) { cluster.priority_overprovisioning = *v; }
            const auto* dns = std::get_if<DnsDiscovery>(&cluster.discovery);
            if (!dns || dns->type != DnsDiscovery::Type::srv) {
                o->key_warning("priority_overprovisioning has no effect: only dns.type: srv gives priority groups");
            }
        }
        f->read_duration("slow_start", cluster.slow_start, false);
        f->read_duration("hold_timeout", cluster.hold_timeout, false);
        if (const auto r = f->get("retries")) { read_retries(*r, cluster.retries); }
        if (const auto t = f->get("timeouts")) {
            if (const auto tf = t->map({"connect", "request", "idle"})) {
                tf->read_duration("connect", cluster.timeouts.connect, true);
                tf->read_duration("request", cluster.timeouts.request, true);
                tf->read_duration("idle", cluster.timeouts.idle, true);
            }
        }
        if (const auto l = f->get("limits")) {
            if (const auto lf = l->map({"max_connections", "max_pending", "max_requests", "max_requests_per_host",
                                        "queue_timeout"})) {
                lf->read_integer("max_connections", cluster.limits.max_connections, 1);
                lf->read_integer("max_pending", cluster.limits.max_pending, 0);
                lf->read_integer("max_requests", cluster.limits.max_requests, 1);
                lf->read_integer("max_requests_per_host", cluster.limits.max_requests_per_host, 0);
                lf->read_duration("queue_timeout", cluster.limits.queue_timeout, false);
            }
        }
        if (const auto a = f->get("adaptive_concurrency")) {
            cluster.adaptive_concurrency = read_adaptive_concurrency(*a);
        }
        if (const auto t = f->get("tls")) { cluster.tls = read_upstream_tls(*t); }
        // A TLS cluster's default probe is the TLS handshake traffic does: a host whose certificate no
        // longer verifies, or that no longer speaks TLS, leaves rotation through its checks rather
        // than through failed requests (HAProxy's checks follow its servers' ssl the same way).
        const auto checks = f->get("health_check");
        const bool probe_given = checks && checks->node().IsMap() &&
                                 (checks->node()["http"] || checks->node()["tcp"] || checks->node()["tls"]);
        if (cluster.tls && !probe_given) { cluster.health_check.probe = TlsProbe{}; }
        cluster.max_clusters = dynamic_max;
        cluster.idle_timeout = dynamic_idle;
        if (dynamic && !cluster.is_template()) {
            f->get("dynamic")->key_error("dynamic applies to template clusters only (a dns.name holding {host})");
        }
        return cluster;
    }

    std::optional<Discovery> read_discovery(const Cursor& c) {
        const auto f = c.map({"static", "dns", "file"});
        if (!f) { return std::nullopt; }
        std::optional<Discovery> chosen;
        std::string_view first;
        for (const auto& [kind, k] : f->present({"static", "dns", "file"})) {
            std::optional<Discovery> v;
            if (kind == "static") {
                v = read_static(k);
            } else if (kind == "dns") {
                v = read_dns(k);
            } else {
                v = read_file_discovery(k);
            }
            if (first.empty()) {
                first = kind;
                chosen = std::move(v);
            } else {
                k.key_error(fmt::format(
                    "discovery takes exactly one of static, dns or file; '{}' is already set", first));
            }
        }
        if (first.empty()) { c.error("discovery needs one of static, dns or file"); }
        return chosen;
    }

    std::optional<Discovery> read_static(const Cursor& c) {
        auto endpoints = read_endpoint_list(c, "static");
        if (!endpoints) { return std::nullopt; }
        return StaticDiscovery{std::move(*endpoints)};
    }

    std::optional<Discovery> read_dns(const Cursor& c) {
        const auto f = c.map({"name", "type", "port", "servers", "refresh", "max_stale"});
        if (!f) { return std::nullopt; }
        DnsDiscovery dns;
        if (const auto n = f->require("name")) {
            if (auto v = n->string()) {
                if (v->empty()) { n->error("name must not be empty"); }
                dns.name = std::move(*v);
            }
        }
        bool type_known = true;
        std::string type_word = "a+aaaa";
        if (const auto t = f->get("type")) {
            using Type = DnsDiscovery::Type;
            const auto v = t->one_of<Type>(
                {{"srv", Type::srv}, {"a", Type::a}, {"aaaa", Type::aaaa}, {"a+aaaa", Type::a_aaaa}});
            type_known = v.has_value();
            if (v) {
                dns.type = *v;
                type_word = t->node().Scalar();
            }
        }
        if (const auto p = f->get("port")) {
            if (const auto v = p->integer(1, 65535)) { dns.port = static_cast<std::uint16_t>(*v); }
        }
        if (const auto s = f->get("servers")) {
            for (const auto& item : s->list()) {
                if (const auto v = item.address(false)) { dns.servers.push_back(*v); }
            }
        }
        if (const auto r = f->get("refresh")) {
            if (const auto rf = r->map({"min", "max"})) {
                rf->read_duration("min", dns.refresh_min, true);
                rf->read_duration("max", dns.refresh_max, true);
                if (dns.refresh_min > dns.refresh_max) {
                    rf->error_at(
                        rf->has("min") ? "min" : "max",
                        fmt::format("refresh min ({}) must not exceed max ({})",
                                    format_duration(dns.refresh_min), format_duration(dns.refresh_max)));
                }
            }
        }
        if (const auto m = f->get("max_stale")) {
            if (const auto v = m->duration()) {
                if (v->count() == 0) {
                    m->error("must be greater than 0 (leave max_stale out to serve a stale set until DNS answers)");
                } else {
                    dns.max_stale = *v;
                }
            }
        }
        if (type_known) {
            if (dns.type == DnsDiscovery::Type::srv) {
                if (const auto p = f->get("port")) {
                    p->key_warning("port is ignored with type srv: SRV records carry their own ports");
                }
            } else if (!f->has("port")) {
                f->error_at("port", fmt::format("dns type {} needs a port", type_word));
            }
        }
        return dns;
    }

    std::optional<Discovery> read_file_discovery(const Cursor& c) {
        auto path = c.string();
        if (!path) { return std::nullopt; }
        if (path->empty()) {
            c.error("file must name the endpoints file");
            return std::nullopt;
        }
        return FileDiscovery{resolve_path(*path)};
    }

    // Like every path in the config, a relative one is relative to the config file's folder.
    std::string resolve_path(const std::string& path) const {
        std::filesystem::path file{path};
        if (file.is_relative()) {
            const auto folder = std::filesystem::path{diag_.file()}.parent_path();
            if (!folder.empty()) { file = folder / file; }
        }
        return file.lexically_normal().string();
    }

    std::optional<HashPolicy> read_hash(const Cursor& c) {
        const auto f = c.map({"header", "cookie", "source_ip"});
        if (!f) { return std::nullopt; }
        std::optional<HashPolicy> hash;
        std::string_view first;
        for (const auto& [kind, k] : f->present({"header", "cookie", "source_ip"})) {
            std::optional<HashPolicy> v;
            if (kind == "source_ip") {
                if (const auto on = k.boolean()) {
                    if (*on) {
                        v = HashPolicy{HashPolicy::Kind::source_ip, {}};
                    } else {
                        k.error("source_ip must be true (or hash on a header or cookie)");
                    }
                }
            } else if (auto name = k.string()) {
                if (name->empty()) {
                    k.error(fmt::format("{} name must not be empty", kind));
                } else {
                    v = HashPolicy{kind == "header" ? HashPolicy::Kind::header : HashPolicy::Kind::cookie,
                                   std::move(*name)};
                }
            }
            if (first.empty()) {
                first = kind;
                hash = std::move(v);
            } else {
                k.key_error(fmt::format(
                    "hash takes exactly one of header, cookie or source_ip; '{}' is already set", first));
            }
        }
        if (first.empty()) { c.error("hash needs one of header, cookie or source_ip"); }
        return hash;
    }

    std::optional<HealthCheck> read_health_check(const Cursor& c) {
        const auto f = c.map({"enabled", "interval", "unhealthy_interval", "timeout", "jitter", "healthy_threshold",
                              "unhealthy_threshold", "http", "tcp", "tls"});
        if (!f) { return std::nullopt; }
        HealthCheck check;
        if (const auto e = f->get("enabled")) { check.enabled = e->boolean().value_or(true); }
        f->read_duration("interval", check.interval, true);
        f->read_duration("unhealthy_interval", check.unhealthy_interval, true);
        f->read_duration("timeout", check.timeout, true);
        if (const auto j = f->get("jitter")) {
            if (const auto v = j->percent()) {
                // Beyond half the interval, probes could bunch up back to back.
                if (*v > 0.5) {
                    j->error("jitter must be at most 50%");
                } else {
                    check.jitter = *v;
                }
            }
        }
        f->read_integer("healthy_threshold", check.healthy_threshold, 1);
        f->read_integer("unhealthy_threshold", check.unhealthy_threshold, 1);
        if (check.timeout > check.interval) {
            f->error_at(f->has("timeout") ? "timeout" : "interval",
                        fmt::format("timeout ({}) must not exceed interval ({})",
                                    format_duration(check.timeout), format_duration(check.interval)));
        }
        std::string_view first;
        for (const auto& [kind, k] : f->present({"http", "tcp", "tls"})) {
            // Extra probes are still read, so their own mistakes are reported too.
            const bool chosen = first.empty();
            if (!chosen) {
                k.key_error(fmt::format(
                    "health_check takes one probe (http, tcp or tls); '{}' is already set", first));
            } else {
                first = kind;
            }
            if (kind == "http") {
                auto http = read_http_probe(k);
                if (http && chosen) { check.probe.emplace<HttpProbe>(std::move(*http)); }
            } else if (k.map({}) && chosen) {
                if (kind == "tcp") {
                    check.probe.emplace<TcpProbe>();
                } else {
                    check.probe.emplace<TlsProbe>();
                }
            }
        }
        return check;
    }

    std::optional<HttpProbe> read_http_probe(const Cursor& c) {
        const auto f = c.map({"path", "host", "expected_statuses"});
        if (!f) { return std::nullopt; }
        HttpProbe probe;
        if (const auto p = f->get("path")) {
            if (auto v = p->string()) {
                const auto odd = std::find_if(v->begin(), v->end(), [](char ch) {
                    const auto byte = static_cast<unsigned char>(ch);
                    return byte <= 0x20 || byte >= 0x7f || byte == '#';
                });
                if (v->empty() || v->front() != '/') {
                    p->error(fmt::format("path '{}' must start with '/'", *v));
                } else if (odd != v->end()) {
                    p->error("path must be a request path: no spaces, control characters, '#' or non-ASCII bytes "
                             "(percent-encode them)");
                } else {
                    probe.path = std::move(*v);
                }
            }
        }
        if (const auto h = f->get("host")) {
            if (auto v = h->string()) {
                if (auto problem = probe_host_problem(*v); !problem.empty()) {
                    h->error(problem);
                } else {
                    probe.host = std::move(*v);
                }
            }
        }
        if (const auto s = f->get("expected_statuses")) {
            const auto items = s->list();
            if (items.empty() && (s->node().IsNull() || s->node().IsSequence())) {
                s->error("expected_statuses needs at least one status, e.g. [200-399]");
            }
            if (!items.empty()) { probe.expected_statuses.clear(); }
            for (const auto& item : items) {
                if (const auto range = read_status_range(item)) { probe.expected_statuses.push_back(*range); }
            }
        }
        return probe;
    }

    std::optional<StatusRange> read_status_range(const Cursor& c) {
        const auto text = c.scalar("a status or range, e.g. 200 or 200-399");
        if (!text) { return std::nullopt; }
        const std::string_view t = *text;
        const auto dash = t.find('-');
        const auto lo = whole_number<int>(t.substr(0, dash));
        const auto hi = dash == std::string_view::npos ? lo : whole_number<int>(t.substr(dash + 1));
        if (!lo || !hi) {
            c.error(fmt::format("expected a status or range, e.g. 200 or 200-399, got '{}'", t));
            return std::nullopt;
        }
        if (*lo < 100 || *lo > 599 || *hi < 100 || *hi > 599) {
            c.error(fmt::format("status '{}' is outside 100-599", t));
            return std::nullopt;
        }
        if (*lo > *hi) {
            c.error(fmt::format("status range '{}' is backwards", t));
            return std::nullopt;
        }
        return StatusRange{*lo, *hi};
    }

    std::optional<OutlierDetection> read_outlier_detection(const Cursor& c) {
        const auto f = c.map({"enabled", "consecutive_failures", "base_ejection_time", "max_ejection_time",
                              "max_ejection_percent"});
        if (!f) { return std::nullopt; }
        OutlierDetection outlier;
        if (const auto e = f->get("enabled")) { outlier.enabled = e->boolean().value_or(true); }
        f->read_integer("consecutive_failures", outlier.consecutive_failures, 1);
        f->read_duration("base_ejection_time", outlier.base_ejection_time, true);
        f->read_duration("max_ejection_time", outlier.max_ejection_time, true);
        f->read_percent("max_ejection_percent", outlier.max_ejection_percent);
        if (outlier.base_ejection_time > outlier.max_ejection_time) {
            f->error_at(f->has("base_ejection_time") ? "base_ejection_time" : "max_ejection_time",
                        fmt::format("base_ejection_time ({}) must not exceed max_ejection_time ({})",
                                    format_duration(outlier.base_ejection_time),
                                    format_duration(outlier.max_ejection_time)));
        }
        return outlier;
    }

    void read_retries(const Cursor& c, Retries& retries) {
        const auto f = c.map({"attempts", "on", "budget", "per_try_timeout"});
        if (!f) { return; }
        f->read_integer("attempts", retries.attempts, 0);
        if (const auto on = f->get("on")) {
            const auto items = on->list();
            if (on->node().IsNull() || on->node().IsSequence()) { retries.on.clear(); }
            for (const auto& item : items) {
                const auto v = item.one_of<RetryOn>({{"connect_failure", RetryOn::connect_failure},
                                                     {"reset", RetryOn::reset},
                                                     {"timeout", RetryOn::timeout},
                                                     {"502", RetryOn::status_502},
                                                     {"503", RetryOn::status_503},
                                                     {"504", RetryOn::status_504}});
                if (v && std::find(retries.on.begin(), retries.on.end(), *v) == retries.on.end()) {
                    retries.on.push_back(*v);
                }
            }
        }
        f->read_percent("budget", retries.budget);
        f->read_duration("per_try_timeout", retries.per_try_timeout, true);
    }

    std::optional<AdaptiveConcurrency> read_adaptive_concurrency(const Cursor& c) {
        const auto f = c.map({"min_limit", "max_limit"});
        if (!f) { return std::nullopt; }
        AdaptiveConcurrency adaptive;
        f->read_integer("min_limit", adaptive.min_limit, 1);
        f->read_integer("max_limit", adaptive.max_limit, 1);
        if (adaptive.min_limit > adaptive.max_limit) {
            f->error_at(f->has("min_limit") ? "min_limit" : "max_limit",
                        fmt::format("min_limit ({}) must not exceed max_limit ({})", adaptive.min_limit,
                                    adaptive.max_limit));
        }
        return adaptive;
    }

    std::optional<UpstreamTls> read_upstream_tls(const Cursor& c) {
        const auto f = c.map({"sni", "ca", "cert", "key", "verify"});
        if (!f) { return std::nullopt; }
        UpstreamTls tls;
        tls.mark = c.mark();
        f->read_string("sni", tls.sni);
        if (const auto sni = f->get("sni"); sni && !valid_server_name(tls.sni)) {
            sni->error(fmt::format("sni '{}' is not a DNS name or an IP address", tls.sni));
        }
        if (const auto v = f->get("verify")) { tls.verify = v->boolean().value_or(true); }
        if (tls.verify && !f->has("sni")) {
            c.key_warning("no sni: the hosts' certificates are verified against the CAs, but not their names "
                          "(any certificate the CAs issued is accepted); set sni to the name they carry");
        }
        for (auto [key, out] : {std::pair{"ca", &tls.ca}, std::pair{"cert", &tls.cert}, std::pair{"key", &tls.key}}) {
            f->read_string(key, *out);
            if (f->has(key) && out->empty()) { f->get(key)->error(fmt::format("{} must not be empty", key)); }
            if (!out->empty()) { *out = resolve_path(*out); }
        }
        if (!tls.verify && f->has("ca")) {
            f->get("ca")->error("ca is unused with verify: false (remove one of them)");
        }
        // A client certificate is useless without its key and the other way round.
        if (f->has("cert") != f->has("key")) {
            const std::string_view given = f->has("cert") ? "cert" : "key";
            f->get(given)->key_error(
                "cert and key go together: set both for a client certificate, or neither");
        }
        return tls;
    }

    void check_unique_names(const std::vector<NamedSite>& names, std::string_view what) {
        std::map<std::string, const Site*> first;
        for (const auto& n : names) {
            const auto [it, inserted] = first.emplace(n.name, &n.site);
            if (!inserted) {
                diag_.error(n.site.mark, n.site.path,
                            fmt::format("duplicate {} name '{}' (first defined at {}:{})", what, n.name,
                                        it->second->mark.file, it->second->mark.line));
            }
        }
    }

    // Two listeners on one address and port would both bind with SO_REUSEPORT and split the traffic
    // between them silently; so would a wildcard (0.0.0.0, [::]) and a specific address of its family
    // on one port, where the specific one takes all the traffic sent to it. The admin endpoint binds
    // without SO_REUSEPORT, so a listener on its address would fail at start. Port 0 asks the kernel
    // for a fresh port each time, so it cannot clash. IPv6 listeners are v6-only: [::]:P and
    // 0.0.0.0:P are two different sockets, and both may be configured.
    void check_listener_addresses(const Address& admin) {
        const auto is_v6 = [](const Address& a) { return a.host.find(':') != std::string::npos; };
        const auto is_wildcard = [](const Address& a) { return a.host == "0.0.0.0" || a.host == "::"; };
        const auto overlap = [&](const Address& a, const Address& b) {
            return a.port != 0 && a.port == b.port && is_v6(a) == is_v6(b) &&
                   (a.host == b.host || is_wildcard(a) || is_wildcard(b));
        };
        const auto where = [](const Site& site) { return fmt::format("{}:{}", site.mark.file, site.mark.line); };
        for (std::size_t i = 0; i < listener_addresses_.size(); ++i) {
            const auto& here = listener_addresses_[i];
            if (overlap(here.address, admin)) {
                diag_.error(here.site.mark, here.site.path,
                            fmt::format("address {} {} the admin endpoint's {} ({})", here.address.str(),
                                        here.address == admin ? "is" : "overlaps", admin.str(),
                                        admin_site_ ? where(*admin_site_) : "the default: see admin.address"));
            }
            for (std::size_t j = 0; j < i; ++j) {
                const auto& before = listener_addresses_[j];
                if (!overlap(here.address, before.address)) { continue; }
                if (here.address == before.address) {
                    diag_.error(here.site.mark, here.site.path,
                                fmt::format("address {} is already used by listener '{}' ({})", here.address.str(),
                                            before.listener, where(before.site)));
                } else {
                    diag_.error(here.site.mark, here.site.path,
                                fmt::format("address {} overlaps listener '{}' on {} ({}): connections to {} "
                                            "would all go to one of them",
                                            here.address.str(), before.listener, before.address.str(),
                                            where(before.site),
                                            is_wildcard(here.address) ? before.address.str() : here.address.str()));
                }
                break;
            }
        }
    }

    void check_cluster_references() {
        std::vector<std::string_view> known;
        for (const auto& n : cluster_names_) { known.push_back(n.name); }
        for (const auto& ref : cluster_references_) {
            if (std::find(known.begin(), known.end(), ref.name) == known.end()) {
                diag_.error(ref.site.mark, ref.site.path,
                            fmt::format("unknown cluster '{}'{}", ref.name, suggestion(ref.name, known)));
            }
        }
    }

    // Templates are only instantiated per Host by routes that say cluster_template; everything else
    // must name a concrete cluster.
    void check_templates(const Config& config) {
        using Use = ClusterReference::Use;
        for (const auto& ref : cluster_references_) {
            const auto* c = config.find_cluster(ref.name);
            if (c == nullptr) { continue; }   // unknown: check_cluster_references says so
            std::string_view problem;
            if (ref.use == Use::route_template && !c->is_template()) {
                problem = "is not a template: its discovery needs dns.name with {host}";
            } else if (ref.use == Use::route && c->is_template()) {
                problem = "is a template ({host} in dns.name); use cluster_template";
            } else if (ref.use == Use::tcp_listener && c->is_template()) {
                problem = "is a template ({host} in dns.name); tcp listeners need a concrete cluster";
            }
            if (!problem.empty()) {
                diag_.error(ref.site.mark, ref.site.path, fmt::format("cluster '{}' {}", c->name, problem));
            }
        }
    }

    // A tcp connection has no header or cookie to hash: only its source address.
    void check_hash_keys(const Config& config) {
        for (const auto& hash : keyed_hashes_) {
            if (hash.name.empty()) { continue; }   // a nameless cluster: its name is the error
            const auto tcp = std::find_if(config.listeners.begin(), config.listeners.end(), [&](const Listener& l) {
                return l.protocol == Protocol::tcp && l.cluster == hash.name;
            });
            if (tcp != config.listeners.end()) {
                diag_.error(hash.site.mark, hash.site.path,
                            fmt::format("hash on header/cookie needs an http listener; use source_ip "
                                        "(tcp listener '{}' uses cluster '{}')",
                                        tcp->name, hash.name));
            }
        }
    }

    Diagnostics& diag_;
    std::vector<NamedSite> listener_names_;
    std::vector<NamedSite> cluster_names_;
    std::vector<ListenerAddress> listener_addresses_;
    std::optional<Site> admin_site_;   // where admin.address is written, when it is
    std::vector<ClusterReference> cluster_references_;
    std::vector<NamedSite> keyed_hashes_;   // clusters hashing on a header or cookie, at their hash key
};

LoadResult finish(Diagnostics& diag, std::optional<Config> config) {
    LoadResult result;
    result.errors = diag.take();
    result.warnings = diag.take_warnings();
    if (result.errors.empty()) { result.config = std::move(config); }
    return result;
}


// The length of the well-formed UTF-8 sequence at the start of `text` (shortest form, no surrogates,
// at most U+10FFFF), or 0.
std::size_t utf8_sequence(std::string_view text) {
    const auto byte = [&](std::size_t i) { return static_cast<unsigned char>(text[i]); };
    const unsigned char lead = byte(0);
    std::size_t n = 0;
    unsigned char lo = 0x80;
    unsigned char hi = 0xbf;
    if (lead >= 0xc2 && lead <= 0xdf) {
        n = 2;
    } else if (lead >= 0xe0 && lead <= 0xef) {
        n = 3;
        lo = lead == 0xe0 ? 0xa0 : 0x80;
        hi = lead == 0xed ? 0x9f : 0xbf;
    } else if (lead >= 0xf0 && lead <= 0xf4) {
        n = 4;
        lo = lead == 0xf0 ? 0x90 : 0x80;
        hi = lead == 0xf4 ? 0x8f : 0xbf;
    } else {
        return 0;
    }
    if (text.size() < n || byte(1) < lo || byte(1) > hi) { return 0; }
    for (std::size_t i = 2; i < n; ++i) {
        if (byte(i) < 0x80 || byte(i) > 0xbf) { return 0; }
    }
    return n;
}

// `text` safe to print on a terminal: control bytes and bytes that are not UTF-8 become \xNN (a
// garbage file's bytes reach messages through yaml-cpp and through the values quoted in them).
std::string printable(std::string_view text) {
    std::string out;
    out.reserve(text.size());
    while (!text.empty()) {
        const auto c = static_cast<unsigned char>(text.front());
        const std::size_t sequence = c >= 0x80 ? utf8_sequence(text) : 0;
        if (sequence > 0) {
            out.append(text.substr(0, sequence));
            text.remove_prefix(sequence);
            continue;
        }
        if (c >= 0x20 && c < 0x7f) {
            out += text.front();
        } else {
            out += fmt::format("\\x{:02x}", c);
        }
        text.remove_prefix(1);
    }
    return out;
}

}  // namespace

std::string ConfigError::str() const {
    std::string out = mark.file;
    if (mark.line > 0) { out += fmt::format(":{}:{}", mark.line, mark.column); }
    out += warning ? ": warning: " : ": ";
    if (!path.empty()) {
        out += printable(path);
        out += ": ";
    }
    out += printable(message);
    return out;
}

// Parses `yaml` as exactly one document. A second document would be silently ignored, so it is an
// error; an empty one after a trailing "---" is harmless. Throws YAML::Exception on syntax errors.
static YAML::Node load_one_document(std::string_view yaml, Diagnostics& diag, std::string_view what) {
    const std::vector<YAML::Node> documents = YAML::LoadAll(std::string{yaml});
    const auto extra = std::find_if(documents.begin() + (documents.empty() ? 0 : 1), documents.end(),
                                    [](const YAML::Node& d) { return !d.IsNull(); });
    if (extra != documents.end()) {
        diag.error(diag.mark(extra->Mark()), {}, fmt::format("{} holds one YAML document; remove the second one", what));
    }
    return documents.empty() ? YAML::Node{} : documents.front();
}

// A NUL byte is no YAML text: yaml-cpp reads it as the end of the stream or as a bad escape, and
// points elsewhere. Says where the first one is.
static bool refuse_nul(std::string_view text, Diagnostics& diag) {
    const auto at = text.find('\0');
    if (at == std::string_view::npos) { return false; }
    const auto before = text.substr(0, at);
    const auto line_start = before.rfind('\n');
    const auto line = 1 + std::count(before.begin(), before.end(), '\n');
    const auto column = line_start == std::string_view::npos ? at + 1 : at - line_start;
    diag.error(Mark{diag.file(), static_cast<int>(line), static_cast<int>(column)}, {},
               "a NUL byte: this is no text file");
    return true;
}

// An unquoted IPv6 address (`address: [::1]:8080`) starts a YAML flow sequence, and yaml-cpp's error
// ("end of map not found") does not say why. When the line the parser stopped at has one, a hint.
static std::string ipv6_hint(std::string_view text, int line) {
    std::size_t start = 0;
    for (int i = 0; i < line && start != std::string_view::npos; ++i) {
        start = text.find('\n', start);
        if (start != std::string_view::npos) { ++start; }
    }
    if (start == std::string_view::npos) { return {}; }
    const auto row = text.substr(start, text.find('\n', start) - start);
    for (auto open = row.find('['); open != std::string_view::npos; open = row.find('[', open + 1)) {
        if (open > 0 && (row[open - 1] == '"' || row[open - 1] == '\'')) { continue; }
        std::size_t i = open + 1;
        bool colon = false;
        while (i < row.size() && (std::isxdigit(static_cast<unsigned char>(row[i])) != 0 || row[i] == ':' || row[i] == '.')) {
            colon = colon || row[i] == ':';
            ++i;
        }
        if (colon && row.substr(i).starts_with("]:")) {
            return fmt::format(" (an IPv6 address must be quoted in YAML: \"{}\")", row.substr(open, row.find_first_of(" ,}", i) - open));
        }
    }
    return {};
}

// yaml-cpp's own message for this is "bad file".
static void refuse_deep(const YAML::DeepRecursion& e, Diagnostics& diag) {
    diag.error(diag.mark(e.mark), {}, fmt::format("nested {} levels deep or more", e.depth()));
}

LoadResult load_string(std::string_view yaml, const std::string& source_name) {
    Diagnostics diag{source_name};
    if (refuse_nul(yaml, diag)) { return finish(diag, std::nullopt); }
    try {
        const YAML::Node root = load_one_document(yaml, diag, "a config file");
        ConfigReader reader{diag};
        Config config = reader.read(Cursor{diag, root, {}, Mark{source_name, 1, 1}});
        return finish(diag, std::move(config));
    } catch (const YAML::DeepRecursion& e) {
        refuse_deep(e, diag);
    } catch (const YAML::Exception& e) {
        diag.error(diag.mark(e.mark), {}, e.msg + ipv6_hint(yaml, e.mark.line));
    } catch (const std::exception& e) {
        // Not expected from a well-formed tree walk; still never let it escape to the caller.
        diag.error(Mark{source_name, 0, 0}, {}, fmt::format("cannot load: {}", e.what()));
    }
    return finish(diag, std::nullopt);
}

namespace {

// The whole file, or the errno that stopped the read.
struct FileText {
    std::optional<std::string> text;
    int error = 0;
};

// Far more than any config or endpoints file (10,000 endpoints take about 400 KB); a path to
// something endless (/dev/zero) or huge stops here, not when memory runs out.
constexpr std::size_t kMaxFileBytes = 16 * 1024 * 1024;

// FileText::error for a path that is not a regular file (read_whole_file with `regular_only`).
constexpr int kNotRegularFile = -1;

// `regular_only`: a FIFO or a device is refused instead of read (opening a FIFO waits for a writer,
// and an endpoints file is read on the control loop).
FileText read_whole_file(const std::string& path, bool regular_only = false) {
    errno = 0;
    const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC | (regular_only ? O_NONBLOCK : 0));
    if (fd < 0) { return {std::nullopt, errno}; }
    struct stat st {};
    if (regular_only && (::fstat(fd, &st) != 0 || !S_ISREG(st.st_mode))) {
        ::close(fd);
        return {std::nullopt, kNotRegularFile};
    }
    const std::unique_ptr<std::FILE, int (*)(std::FILE*)> file{::fdopen(fd, "rb"), &std::fclose};
    if (!file) {
        const int error = errno;
        ::close(fd);
        return {std::nullopt, error};
    }
    std::string text;
    std::array<char, 64 * 1024> buffer{};
    std::size_t n = 0;
    while ((n = std::fread(buffer.data(), 1, buffer.size(), file.get())) > 0) {
        if (text.size() + n > kMaxFileBytes) { return {std::nullopt, EFBIG}; }
        text.append(buffer.data(), n);
    }
    if (std::ferror(file.get()) != 0) { return {std::nullopt, errno != 0 ? errno : EIO}; }
    return {std::move(text), 0};
}

ConfigError cannot_read(const std::string& path, int err) {
    return ConfigError{Mark{path, 0, 0}, {},
                       err == EFBIG             ? fmt::format("cannot read file: larger than {} MiB", kMaxFileBytes >> 20)
                       : err == kNotRegularFile ? std::string("cannot read file: not a regular file")
                                                : fmt::format("cannot read file: {}", std::generic_category().message(err))};
}

}  // namespace

LoadResult load_file(const std::string& path, bool regular_only) {
    auto file = read_whole_file(path, regular_only);
    if (!file.text) {
        LoadResult result;
        result.errors.push_back(cannot_read(path, file.error));
        return result;
    }
    return load_string(*file.text, path);
}

EndpointsFileResult load_endpoints_string(std::string_view yaml, const std::string& source_name) {
    Diagnostics diag{source_name};
    std::optional<std::vector<StaticEndpoint>> endpoints;
    if (refuse_nul(yaml, diag)) {
        EndpointsFileResult result;
        result.errors = diag.take();
        return result;
    }
    try {
        const YAML::Node root = load_one_document(yaml, diag, "an endpoints file");
        const Cursor cursor{diag, root, {}, Mark{source_name, 1, 1}};
        // An empty file is what a writer caught half-way leaves behind: an error, not "no hosts".
        if (root.IsNull()) {
            cursor.error("empty endpoints file; expected 'endpoints:' and a list of addresses");
        } else if (const auto f = cursor.map({"endpoints"})) {
            if (const auto list = f->require("endpoints")) { endpoints = read_endpoint_list(*list, "endpoints"); }
        }
    } catch (const YAML::DeepRecursion& e) {
        refuse_deep(e, diag);
    } catch (const YAML::Exception& e) {
        diag.error(diag.mark(e.mark), {}, e.msg + ipv6_hint(yaml, e.mark.line));
    } catch (const std::exception& e) {
        diag.error(Mark{source_name, 0, 0}, {}, fmt::format("cannot load: {}", e.what()));
    }
    EndpointsFileResult result;
    result.errors = diag.take();
    if (result.errors.empty()) { result.endpoints = std::move(endpoints); }
    return result;
}

EndpointsFileResult load_endpoints_file(const std::string& path) {
    auto file = read_whole_file(path, true);
    if (!file.text) {
        EndpointsFileResult result;
        result.errors.push_back(cannot_read(path, file.error));
        result.unreadable = true;
        return result;
    }
    return load_endpoints_string(*file.text, path);
}

std::vector<ConfigError> check_runnable(const Config& config) {
    if (!config.listeners.empty()) { return {}; }
    return {ConfigError{config.listeners_mark, "listeners",
                        "no listeners: add at least one under 'listeners:' (is the file truncated?)"}};
}

std::optional<Duration> parse_duration(std::string_view text) { return duration_of(text).value; }
std::optional<std::uint64_t> parse_size(std::string_view text) { return size_of(text).value; }
std::optional<double> parse_percent(std::string_view text) { return percent_of(text).value; }
std::optional<Address> parse_address(std::string_view text) { return address_of(text).value; }

}  // namespace drover::config
