// The value formats of the config file: durations, sizes, percentages and addresses (config/loader.hpp).

#include <gtest/gtest.h>

#include "config/loader.hpp"

namespace drover::config {
namespace {

TEST(ParseDuration, AcceptsEveryUnit) {
    EXPECT_EQ(parse_duration("250ms"), Duration{250});
    EXPECT_EQ(parse_duration("1s"), Duration{1000});
    EXPECT_EQ(parse_duration("5m"), Duration{5 * 60 * 1000});
    EXPECT_EQ(parse_duration("1h"), Duration{60 * 60 * 1000});
    EXPECT_EQ(parse_duration("0s"), Duration{0});
    EXPECT_EQ(parse_duration("0ms"), Duration{0});
    EXPECT_EQ(parse_duration("300s"), Duration{300000});
}

TEST(ParseDuration, AcceptsExactFractions) {
    EXPECT_EQ(parse_duration("1.5s"), Duration{1500});
    EXPECT_EQ(parse_duration("0.25s"), Duration{250});
    EXPECT_EQ(parse_duration("1.001s"), Duration{1001});   // exact, no floating-point rounding
    EXPECT_EQ(parse_duration("1.5m"), Duration{90000});
    EXPECT_EQ(parse_duration("0.5h"), Duration{30 * 60 * 1000});
    EXPECT_EQ(parse_duration("2.50s"), Duration{2500});
}

TEST(ParseDuration, RejectsMalformedInput) {
    for (const char* bad :
         {"",  "5",   "1.5", "1us",   "1ns",     "1d",    "1S",    "1 s",  " 1s", "-1s", "+1s",
          "s", "1.s", ".5s", "0.5ms", "1.0001s", "1e3ms", "1h30m", "1,5s", "ms",  "1sx", "9999999999999h"}) {
        EXPECT_EQ(parse_duration(bad), std::nullopt) << "'" << bad << "'";
    }
}

// Up to a year; past it a timer's nanosecond deadline would wrap into the past and fire at once.
TEST(ParseDuration, RefusesMoreThanAYear) {
    EXPECT_EQ(parse_duration("8760h"), Duration{8760LL * 60 * 60 * 1000});
    EXPECT_EQ(parse_duration("525600m"), Duration{8760LL * 60 * 60 * 1000});
    for (const char* big : {"8761h", "8760.001h", "525601m", "31536000001ms", "3000000h", "999999999999h"}) {
        EXPECT_EQ(parse_duration(big), std::nullopt) << "'" << big << "'";
    }
}

TEST(ParseSize, AcceptsPlainNumbersAndUnits) {
    EXPECT_EQ(parse_size("0"), 0u);
    EXPECT_EQ(parse_size("100"), 100u);
    EXPECT_EQ(parse_size("100B"), 100u);
    EXPECT_EQ(parse_size("64KiB"), 64u * 1024);
    EXPECT_EQ(parse_size("1MiB"), 1024u * 1024);
    EXPECT_EQ(parse_size("2GiB"), 2ULL * 1024 * 1024 * 1024);
    EXPECT_EQ(parse_size("1KB"), 1000u);
    EXPECT_EQ(parse_size("10MB"), 10u * 1000 * 1000);
    EXPECT_EQ(parse_size("3GB"), 3ULL * 1000 * 1000 * 1000);
    EXPECT_EQ(parse_size("64 KiB"), 64u * 1024);
    EXPECT_EQ(parse_size("18446744073709551615"), 18446744073709551615ULL);
}

TEST(ParseSize, RejectsMalformedInput) {
    for (const char* bad : {"", "KiB", "1.5MiB", "-1", "+1", "1kb", "1Kib", "1TiB", "1 ", "1b", "0x10",
                            "18446744073709551616", "20000000000GiB", "1 2"}) {
        EXPECT_EQ(parse_size(bad), std::nullopt) << "'" << bad << "'";
    }
}

TEST(ParsePercent, ReturnsAFraction) {
    EXPECT_DOUBLE_EQ(*parse_percent("50%"), 0.5);
    EXPECT_DOUBLE_EQ(*parse_percent("0%"), 0.0);
    EXPECT_DOUBLE_EQ(*parse_percent("100%"), 1.0);
    EXPECT_DOUBLE_EQ(*parse_percent("12.5%"), 0.125);
    EXPECT_DOUBLE_EQ(*parse_percent("0.5%"), 0.005);
}

TEST(ParsePercent, RejectsMissingSignAndOutOfRange) {
    for (const char* bad :
         {"", "50", "0.5", "%", "50 %", "abc%", "101%", "100.5%", "-1%", "-0%", "50%%", "5O%"}) {
        EXPECT_EQ(parse_percent(bad), std::nullopt) << "'" << bad << "'";
    }
}

TEST(ParseAddress, AcceptsIpv4) {
    const auto a = parse_address("1.2.3.4:80");
    ASSERT_TRUE(a);
    EXPECT_EQ(a->host, "1.2.3.4");
    EXPECT_EQ(a->port, 80);
    EXPECT_EQ(a->str(), "1.2.3.4:80");
    EXPECT_EQ(parse_address("0.0.0.0:0"), (Address{"0.0.0.0", 0}));
    EXPECT_EQ(parse_address("255.255.255.255:65535"), (Address{"255.255.255.255", 65535}));
}

TEST(ParseAddress, AcceptsBracketedIpv6) {
    const auto a = parse_address("[::1]:80");
    ASSERT_TRUE(a);
    EXPECT_EQ(a->host, "::1");
    EXPECT_EQ(a->port, 80);
    EXPECT_EQ(a->str(), "[::1]:80");
    EXPECT_EQ(parse_address("[::]:0"), (Address{"::", 0}));
    EXPECT_EQ(parse_address("[2001:db8::1]:443"), (Address{"2001:db8::1", 443}));
    EXPECT_EQ(parse_address("[::ffff:10.0.0.1]:8080"), (Address{"::ffff:10.0.0.1", 8080}));
}

TEST(ParseAddress, StoresTheCanonicalForm) {
    // So that two spellings of one address compare equal (duplicate listener detection relies on it).
    EXPECT_EQ(parse_address("[2001:DB8:0:0:0:0:0:1]:443"), (Address{"2001:db8::1", 443}));
    EXPECT_EQ(parse_address("[0:0:0:0:0:0:0:1]:80"), parse_address("[::1]:80"));
}

TEST(ParseAddress, RejectsHostnamesAndMalformedInput) {
    for (const char* bad : {"",
                            "localhost:80",
                            "web.internal:8080",
                            "1.2.3.4",
                            "1.2.3.4:",
                            "1.2.3.4:65536",
                            "1.2.3.4:-1",
                            "1.2.3.4:8o",
                            "1.2.3.4:+80",
                            "1.2.3.4:000080",
                            ":80",
                            "::1:80",
                            "::1",
                            "[::1]",
                            "[::1]80",
                            "[::1:80",
                            "[1.2.3.4]:80",
                            "1.2.3.256:80",
                            "1.2.3:80",
                            "[fe80::1%eth0]:80",
                            "[::1]:",
                            "1.2.3.4 :80",
                            "[localhost]:80"}) {
        EXPECT_EQ(parse_address(bad), std::nullopt) << "'" << bad << "'";
    }
}

}  // namespace
}  // namespace drover::config
