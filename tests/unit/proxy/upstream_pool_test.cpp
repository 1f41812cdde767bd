// proxy/connection_budget and UpstreamPool::close_idle: the cluster's connection breaker
// (limits.max_connections) and the idle connection closed to make room under it.

#include "proxy/upstream_pool.hpp"

#include <gtest/gtest.h>

#include "proxy/connection_budget.hpp"

namespace drover::proxy {
namespace {

namespace asio = boost::asio;

TEST(ConnectionBudget, ReservesUpToTheLimitAndTokensGiveThePlaceBack) {
    auto budget = std::make_shared<ConnectionBudget>();
    ASSERT_TRUE(reserve_connection(*budget, 2));
    ConnectionToken first(budget);
    ASSERT_TRUE(reserve_connection(*budget, 2));
    auto second = std::make_unique<ConnectionToken>(budget);
    EXPECT_FALSE(reserve_connection(*budget, 2));
    EXPECT_EQ(budget->open.load(), 2);   // a refusal leaves the count as it was

    ConnectionToken moved(std::move(first));   // moving a token moves the place, not a second one
    EXPECT_EQ(budget->open.load(), 2);
    EXPECT_EQ(moved.budget(), budget.get());
    second.reset();
    EXPECT_EQ(budget->open.load(), 1);
    moved = ConnectionToken();   // reassigned: gives its place back
    EXPECT_EQ(budget->open.load(), 0);
    EXPECT_TRUE(reserve_connection(*budget, 2));
}

TEST(ConnectionBudget, PlacesGivenBackGoToWaitersOldestFirst) {
    auto budget = std::make_shared<ConnectionBudget>();
    ASSERT_TRUE(reserve_connection(*budget, 1));
    auto held = std::make_unique<ConnectionToken>(budget);
    int woken_first = 0, woken_second = 0;
    auto first = std::make_unique<PlaceQueueEntry>(*budget, nullptr, [&] { ++woken_first; });
    PlaceQueueEntry second(*budget, nullptr, [&] { ++woken_second; });
    EXPECT_TRUE(has_place_waiters(*budget));
    EXPECT_FALSE(first->take_grant());

    held.reset();   // given back: granted to the oldest, still counted, nobody else can reserve it
    EXPECT_EQ(woken_first, 1);
    EXPECT_EQ(woken_second, 0);
    EXPECT_EQ(budget->open.load(), 1);
    EXPECT_FALSE(reserve_connection(*budget, 1));
    EXPECT_FALSE(second.take_grant());

    first.reset();   // it left without using its grant: the place goes on to the next
    EXPECT_EQ(woken_second, 1);
    EXPECT_EQ(budget->open.load(), 1);
    ASSERT_TRUE(second.take_grant());
    EXPECT_FALSE(second.take_grant());   // one grant, taken once
    EXPECT_FALSE(has_place_waiters(*budget));
    {
        const ConnectionToken now_held(budget);   // the waiter counts its connection in the grant
    }
    EXPECT_EQ(budget->open.load(), 0);   // nobody waits: given back to all
}

TEST(ConnectionBudget, NoGrantsWhileOverALoweredLimit) {
    auto budget = std::make_shared<ConnectionBudget>();
    ASSERT_TRUE(reserve_connection(*budget, 2));
    ASSERT_TRUE(reserve_connection(*budget, 2));
    auto a = std::make_unique<ConnectionToken>(budget), b = std::make_unique<ConnectionToken>(budget);
    EXPECT_FALSE(reserve_connection(*budget, 1));   // a reload lowered the limit to 1
    PlaceQueueEntry waiter(*budget, nullptr, [] {});
    a.reset();   // 2 open, limit 1: this place is not granted but freed
    EXPECT_EQ(budget->open.load(), 1);
    EXPECT_FALSE(waiter.take_grant());
    b.reset();   // within the limit again: granted
    EXPECT_TRUE(waiter.take_grant());
    EXPECT_EQ(budget->open.load(), 1);
}

TEST(ConnectionBudget, AWaiterThatLeavesUngrantedLeavesTheQueue) {
    auto budget = std::make_shared<ConnectionBudget>();
    { const PlaceQueueEntry gone(*budget, nullptr, [] {}); }
    EXPECT_FALSE(has_place_waiters(*budget));
    EXPECT_FALSE(budget->waiters.has_waiters());
    ASSERT_TRUE(reserve_connection(*budget, 1));
    { const ConnectionToken token(budget); }
    EXPECT_EQ(budget->open.load(), 0);
}

class PoolTest : public ::testing::Test {
protected:
    std::shared_ptr<const discovery::Host> host(std::uint16_t port) {
        auto h = std::make_shared<const discovery::Host>(asio::ip::tcp::endpoint(asio::ip::make_address_v4(0x7f000001), port));
        h->stats().connections_active.store(0);
        return h;
    }

    // Parks a connection counted in `budget`, as a session does after a clean exchange.
    void park(const std::shared_ptr<const discovery::Host>& h, const std::shared_ptr<ConnectionBudget>& budget) {
        ASSERT_TRUE(reserve_connection(*budget, 100));
        auto stream = std::make_unique<Stream>(asio::ip::tcp::socket(context));
        stream->count_in(ConnectionToken(budget));
        h->stats().connections_active.fetch_add(1);
        pool.put(h, std::move(stream), std::chrono::seconds(60));
    }

    asio::io_context context;
    UpstreamPool pool{context};
};

TEST_F(PoolTest, CloseIdleClosesTheLongestParkedConnectionOfThatClusterOnly) {
    auto cluster_a = std::make_shared<ConnectionBudget>();
    auto cluster_b = std::make_shared<ConnectionBudget>();
    const auto a1 = host(1001), a2 = host(1002), b1 = host(2001);
    park(b1, cluster_b);
    park(a1, cluster_a);
    park(a2, cluster_a);
    park(a2, cluster_a);
    ASSERT_EQ(cluster_a->open.load(), 3);
    ASSERT_EQ(cluster_a->idle.load(), 3);

    ASSERT_TRUE(pool.close_idle(*cluster_a));   // a1's: parked first
    EXPECT_EQ(cluster_a->open.load(), 2);
    EXPECT_EQ(cluster_a->idle.load(), 2);
    EXPECT_EQ(a1->stats().connections_active.load(), 0);
    EXPECT_EQ(a2->stats().connections_active.load(), 2);

    ASSERT_TRUE(pool.close_idle(*cluster_a));
    ASSERT_TRUE(pool.close_idle(*cluster_a));
    EXPECT_EQ(cluster_a->open.load(), 0);
    EXPECT_EQ(cluster_a->idle.load(), 0);
    EXPECT_EQ(a2->stats().connections_active.load(), 0);
    EXPECT_FALSE(pool.close_idle(*cluster_a));   // none left of that cluster

    EXPECT_EQ(cluster_b->open.load(), 1);   // another cluster's idle connection stays
    EXPECT_EQ(pool.idle_count(), 1u);
    pool.clear();
    EXPECT_EQ(cluster_b->open.load(), 0);   // closing by any path gives the place back
    EXPECT_EQ(cluster_b->idle.load(), 0);
    EXPECT_EQ(b1->stats().connections_active.load(), 0);
}

TEST_F(PoolTest, WhileARequestOnAnotherWorkerWaitsForAPlaceAConnectionIsClosedNotParked) {
    auto cluster = std::make_shared<ConnectionBudget>();
    const auto a = host(1001);
    asio::io_context other_worker;
    int woken = 0;
    {
        const PlaceQueueEntry elsewhere(*cluster, &other_worker, [&] { ++woken; });
        park(a, cluster);
        EXPECT_EQ(pool.idle_count(), 0u);   // closed: its place granted to the waiter
        EXPECT_EQ(woken, 1);
        EXPECT_EQ(cluster->open.load(), 1);
        EXPECT_EQ(a->stats().connections_active.load(), 0);
    }
    EXPECT_EQ(cluster->open.load(), 0);   // the grant went unused: back to all
    {
        const PlaceQueueEntry here(*cluster, &context, [&] { ++woken; });
        park(a, cluster);   // the oldest waiter is on this worker: parked, it may want this host
        EXPECT_EQ(pool.idle_count(), 1u);
        EXPECT_EQ(woken, 1);
    }
}

}  // namespace
}  // namespace drover::proxy
