#pragma once
// The process logger: one line per event on stderr, "<UTC time> <level> <message>".
// It lives in drover_config because that is the bottom layer every other one may use.
// Thread-safe: each line is formatted in a local buffer and written with a single write(2).

#include <fmt/format.h>
#include <string_view>

#include "config/config.hpp"

namespace drover::log {

using Level = config::LogConfig::Level;

void set_level(Level level);
bool enabled(Level level);
void write(Level level, std::string_view message);

template <class... Args>
void debug(fmt::format_string<Args...> fmt, Args&&... args) {
    if (enabled(Level::debug)) { write(Level::debug, fmt::format(fmt, std::forward<Args>(args)...)); }
}
template <class... Args>
void info(fmt::format_string<Args...> fmt, Args&&... args) {
    if (enabled(Level::info)) { write(Level::info, fmt::format(fmt, std::forward<Args>(args)...)); }
}
template <class... Args>
void warn(fmt::format_string<Args...> fmt, Args&&... args) {
    if (enabled(Level::warn)) { write(Level::warn, fmt::format(fmt, std::forward<Args>(args)...)); }
}
template <class... Args>
void error(fmt::format_string<Args...> fmt, Args&&... args) {
    if (enabled(Level::error)) { write(Level::error, fmt::format(fmt, std::forward<Args>(args)...)); }
}

}  // namespace drover::log
