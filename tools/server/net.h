// Shared pieces of the network layer (http.cpp, realtime.cpp): one io_context thread runs every
// connection as a C++20 coroutine; engine events reach a coroutine through an EventQueue.
#pragma once

#include <boost/asio.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <boost/beast/websocket.hpp>
#include <chrono>
#include <deque>
#include <memory>
#include <optional>
#include <set>
#include <string>

#include "metrics.h"
#include "protocol.h"
#include "scheduler.h"
#include "server.h"

namespace voxrt::server {

namespace net = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
namespace websocket = beast::websocket;
using tcp = net::ip::tcp;
template <class T>
using awaitable = net::awaitable<T>;
inline constexpr auto use_tuple = net::as_tuple(net::use_awaitable);

class RealtimeSession;

struct ServerState {
    net::io_context& ioc;
    Engine& engine;
    Scheduler& sched;
    Metrics& metrics;
    ServerOptions opt;
    std::vector<std::string> voices;
    std::vector<std::string> chat_voices;
    bool draining = false;
    int http_in_flight = 0;  // engine-backed HTTP requests being answered
    int connections = 0;
    uint64_t next_id = 1;
    std::set<RealtimeSession*> realtime;  // open Realtime sessions (io thread only)
    std::string new_id(const char* prefix) {
        return std::string(prefix) + std::to_string(next_id++);
    }
};

// Engine events for one coroutine. The sink posts each event to the io thread.
class EventQueue : public std::enable_shared_from_this<EventQueue> {
public:
    explicit EventQueue(net::any_io_executor ex) : ex_(ex), timer_(ex) {}
    Slot::Sink sink() {
        auto self = shared_from_this();
        return [self](EngineEvent&& ev) {
            net::post(self->ex_,
                      [self, ev = std::move(ev)]() mutable { self->push(std::move(ev)); });
        };
    }
    void push(EngineEvent ev) {
        q_.push_back(std::move(ev));
        timer_.cancel();
    }
    // Makes next() return nullopt (e.g. the client went away).
    void interrupt() {
        interrupted_ = true;
        timer_.cancel();
    }
    bool interrupted() const { return interrupted_; }
    awaitable<std::optional<EngineEvent>> next() {
        while (q_.empty() && !interrupted_) {
            timer_.expires_at(std::chrono::steady_clock::time_point::max());
            co_await timer_.async_wait(use_tuple);
        }
        if (q_.empty()) co_return std::nullopt;
        EngineEvent ev = std::move(q_.front());
        q_.pop_front();
        co_return ev;
    }

private:
    net::any_io_executor ex_;
    net::steady_timer timer_;
    std::deque<EngineEvent> q_;
    bool interrupted_ = false;
};

// Realtime endpoint: takes over an upgraded connection.
awaitable<void> run_realtime(ServerState& st, beast::tcp_stream stream,
                             http::request<http::string_body> req);

}  // namespace voxrt::server
