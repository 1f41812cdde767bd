// proxy/admission: the slot, cap and Retry-After decisions the HTTP data path takes per request.

#include "proxy/admission.hpp"

#include <gtest/gtest.h>

namespace drover::proxy {
namespace {

TEST(Admission, ClusterSlotsStopAtTheLimitAndComeBackWhenReleased) {
    ClusterStats stats;
    EXPECT_TRUE(take_cluster_slot(stats, 2));
    EXPECT_TRUE(take_cluster_slot(stats, 2));
    EXPECT_FALSE(take_cluster_slot(stats, 2));
    EXPECT_EQ(stats.requests_active.load(), 2);   // a refusal leaves the count as it was
    release_cluster_slot(stats);
    EXPECT_TRUE(take_cluster_slot(stats, 2));
}

TEST(Admission, ASlotGivenBackGoesToTheOldestWaiterOnAnyWorker) {
    ClusterStats stats;
    ASSERT_TRUE(take_cluster_slot(stats, 1));
    int woken = 0;
    {
        GrantQueueEntry waiter(stats.request_waiters, nullptr, [&] { ++woken; }, [&] { release_cluster_slot(stats); });
        release_cluster_slot(stats);   // granted, still counted: a newcomer finds no slot
        EXPECT_EQ(woken, 1);
        EXPECT_EQ(stats.requests_active.load(), 1);
        EXPECT_FALSE(take_cluster_slot(stats, 1));
        EXPECT_TRUE(waiter.take_grant());
        release_cluster_slot(stats);   // nobody waits now: freed
        EXPECT_EQ(stats.requests_active.load(), 0);
    }
    {
        ASSERT_TRUE(take_cluster_slot(stats, 1));
        const GrantQueueEntry waiter(stats.request_waiters, nullptr, [] {}, [&] { release_cluster_slot(stats); });
        release_cluster_slot(stats);   // granted, but the waiter leaves without it: passed on, freed
    }
    EXPECT_EQ(stats.requests_active.load(), 0);
    EXPECT_FALSE(stats.request_waiters.has_waiters());
}

TEST(Admission, HostCapZeroMeansNoCap) {
    const discovery::Host host(boost::asio::ip::tcp::endpoint(boost::asio::ip::make_address_v4(0x7f000001), 80));
    host.stats().requests_active.store(5);
    EXPECT_TRUE(host_has_room(host, 0));
    EXPECT_TRUE(host_has_room(host, 6));
    EXPECT_FALSE(host_has_room(host, 5));
}

TEST(Admission, AHostSlotGivenBackGoesToTheOldestWaiterWithItsHost) {
    ClusterStats stats;
    const auto host = std::make_shared<const discovery::Host>(
        boost::asio::ip::tcp::endpoint(boost::asio::ip::make_address_v4(0x7f000001), 80));
    host->stats().requests_active.store(1);   // at its cap of 1
    release_host_slot(stats, host, 1);         // nobody waits: freed
    EXPECT_EQ(host->stats().requests_active.load(), 0);

    host->stats().requests_active.store(1);
    int woken = 0;
    {
        const auto give_back = [&](std::shared_ptr<const void> unit) {
            release_host_slot(stats, std::static_pointer_cast<const discovery::Host>(unit), 1);
        };
        GrantQueueEntry first(stats.host_waiters, nullptr, [&] { ++woken; }, give_back);
        GrantQueueEntry second(stats.host_waiters, nullptr, [&] { ++woken; }, give_back);
        release_host_slot(stats, host, 1);   // granted to the first, still counted: a newcomer finds it full
        EXPECT_EQ(woken, 1);
        EXPECT_EQ(host->stats().requests_active.load(), 1);
        EXPECT_FALSE(host_has_room(*host, 1));
        EXPECT_FALSE(second.take_grant());
        std::shared_ptr<const void> unit;
        ASSERT_TRUE(first.take_grant(&unit));
        EXPECT_EQ(unit.get(), host.get());   // the grant says which host's slot
        // Over the cap (a reload lowered it to 1 while 2 were in flight): nothing is granted until
        // the host is back under it.
        host->stats().requests_active.store(2);
        release_host_slot(stats, host, 1);
        EXPECT_EQ(host->stats().requests_active.load(), 1);
        EXPECT_EQ(woken, 1);
        release_host_slot(stats, host, 1);   // to the second, which leaves without taking it: freed
        EXPECT_EQ(woken, 2);
    }
    EXPECT_EQ(host->stats().requests_active.load(), 0);
    EXPECT_FALSE(stats.host_waiters.has_waiters());
}

TEST(Admission, RetryAfterIsTheQueueDrainTimeInWholeSecondsFrom1To30) {
    EXPECT_EQ(shed_retry_after(0, 10, 0.05), 1u);      // nothing queued: the minimum
    EXPECT_EQ(shed_retry_after(-3, 10, 0.05), 1u);     // a transiently negative gauge counts as 0
    EXPECT_EQ(shed_retry_after(99, 10, 0.25), 3u);     // 100 requests / 10 slots x 0.25 s = 2.5 s -> 3
    EXPECT_EQ(shed_retry_after(999, 1, 1.0), 30u);     // capped
    EXPECT_EQ(shed_retry_after(5, 0, 1.0), 6u);        // no slots counts as one
}

}  // namespace
}  // namespace drover::proxy
