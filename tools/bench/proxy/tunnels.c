/*
 * tunnels: a small epoll load tool for the proxy bench (tools/bench/bench_proxy.sh).
 *
 * Rate mode: keeps C connections busy for D seconds; each one opens a fresh
 * TCP connection, sets up a tunnel (HTTP CONNECT or SOCKS5 CONNECT, or none
 * for the direct baseline), sends one short GET through it, reads the whole
 * response (Content-Length) and closes. Prints "done <n> errors <e> seconds
 * <s> rate <n/s>". One thread, no allocation per connection: C-speed, so the
 * proxy (not this tool) is the bottleneck; the bench measures it on the
 * direct path too.
 *
 * Hold mode (-n N): sets up N tunnels, sends one keep-alive GET through each
 * and reads its answer, prints "ready <n> errors <e>" and keeps them open
 * and idle until stdin closes or D seconds pass (the RSS row).
 *
 * Usage: tunnels MODE PROXY_HOST PROXY_PORT TARGET_HOST TARGET_PORT [-c C] [-d D] [-n N]
 *   MODE: direct | connect | socks5   (direct: PROXY_* are ignored)
 * Every run is bounded by D seconds (and each connection by 10 s).
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

enum mode { DIRECT, CONNECT, SOCKS5 };
enum state { ST_CONNECTING, ST_PROXY_REPLY, ST_SOCKS_METHOD, ST_SOCKS_REPLY, ST_RESPONSE, ST_IDLE };

#define BUF 4096
#define CONN_TIMEOUT 10.0
#define RAMP 50

struct conn {
    int fd;
    enum state st;
    size_t len;
    double started;
    char buf[BUF];
};

static enum mode mode;
static struct sockaddr_in proxy_addr, target_addr;
static char connect_req[256], get_req[256], get_keepalive[256], socks_req[10];
static size_t connect_len, get_len, get_keepalive_len;
static int epfd, hold;
static long done_count, errors;

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static int send_all(int fd, const char *data, size_t n) {
    /* small messages into an empty socket buffer: a short write is an error here */
    ssize_t w = send(fd, data, n, MSG_NOSIGNAL);
    return w == (ssize_t)n ? 0 : -1;
}

static int start(struct conn *c) {
    c->fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (c->fd < 0) return -1;
    int one = 1;
    setsockopt(c->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    struct sockaddr_in *to = mode == DIRECT ? &target_addr : &proxy_addr;
    c->len = 0;
    c->started = now();
    c->st = ST_CONNECTING;
    if (connect(c->fd, (struct sockaddr *)to, sizeof *to) < 0 && errno != EINPROGRESS) {
        close(c->fd);
        c->fd = -1;
        return -1;
    }
    struct epoll_event ev = {.events = EPOLLOUT | EPOLLIN, .data.ptr = c};
    epoll_ctl(epfd, EPOLL_CTL_ADD, c->fd, &ev);
    return 0;
}

static void finish(struct conn *c, int ok) {
    if (c->fd >= 0) {
        epoll_ctl(epfd, EPOLL_CTL_DEL, c->fd, NULL);
        close(c->fd);
        c->fd = -1;
    }
    if (ok) done_count++;
    else errors++;
}

static int send_get(struct conn *c) {
    c->st = ST_RESPONSE;
    c->len = 0;
    return hold ? send_all(c->fd, get_keepalive, get_keepalive_len) : send_all(c->fd, get_req, get_len);
}

/* complete HTTP response in buf? 1 yes, 0 not yet, -1 bad */
static int response_complete(struct conn *c) {
    char *end = memmem(c->buf, c->len, "\r\n\r\n", 4);
    if (!end) return c->len >= BUF ? -1 : 0;
    if (c->len < 12 || memcmp(c->buf + 9, "200", 3) != 0) return -1;
    size_t head = (size_t)(end - c->buf) + 4;
    const char *cl = memmem(c->buf, head, "\r\nContent-Length:", 17);
    if (!cl) cl = memmem(c->buf, head, "\r\ncontent-length:", 17);
    if (!cl) return -1;
    size_t body = strtoul(cl + 17, NULL, 10);
    return c->len >= head + body ? 1 : 0;
}

/* returns 1 when the connection finished its job, 0 to keep going, -1 on error */
static int on_event(struct conn *c, unsigned events) {
    if (c->st == ST_CONNECTING) {
        if (!(events & (EPOLLOUT | EPOLLERR | EPOLLHUP))) return 0;
        int err = 0;
        socklen_t el = sizeof err;
        getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &err, &el);
        if (err) return -1;
        struct epoll_event ev = {.events = EPOLLIN, .data.ptr = c};
        epoll_ctl(epfd, EPOLL_CTL_MOD, c->fd, &ev);
        if (mode == DIRECT) return send_get(c);
        if (mode == CONNECT) {
            c->st = ST_PROXY_REPLY;
            return send_all(c->fd, connect_req, connect_len);
        }
        c->st = ST_SOCKS_METHOD;
        return send_all(c->fd, "\x05\x01\x00", 3);
    }
    if (!(events & (EPOLLIN | EPOLLERR | EPOLLHUP))) return 0;
    if (c->st == ST_IDLE) return -1; /* an idle tunnel was closed or got data */
    ssize_t r = recv(c->fd, c->buf + c->len, BUF - c->len, 0);
    if (r <= 0) return r < 0 && errno == EAGAIN ? 0 : -1;
    c->len += (size_t)r;
    switch (c->st) {
    case ST_PROXY_REPLY: {
        char *end = memmem(c->buf, c->len, "\r\n\r\n", 4);
        if (!end) return c->len >= BUF ? -1 : 0;
        if (c->len < 12 || memcmp(c->buf + 9, "200", 3) != 0) return -1;
        if ((size_t)(end - c->buf) + 4 != c->len) return -1; /* nothing may follow yet */
        return send_get(c);
    }
    case ST_SOCKS_METHOD:
        if (c->len < 2) return 0;
        if (c->len != 2 || c->buf[0] != 5 || c->buf[1] != 0) return -1;
        c->st = ST_SOCKS_REPLY;
        c->len = 0;
        return send_all(c->fd, socks_req, sizeof socks_req);
    case ST_SOCKS_REPLY: {
        if (c->len < 5) return 0;
        if (c->buf[0] != 5 || c->buf[1] != 0) return -1;
        size_t need = c->buf[3] == 1 ? 10 : c->buf[3] == 4 ? 22 : 7 + (unsigned char)c->buf[4];
        if (c->len < need) return 0;
        if (c->len != need) return -1;
        return send_get(c);
    }
    case ST_RESPONSE: {
        int st = response_complete(c);
        if (st <= 0) return st;
        if (hold) c->st = ST_IDLE;
        return 1;
    }
    default:
        return -1;
    }
}

static void usage(void) {
    fprintf(stderr, "usage: tunnels direct|connect|socks5 PROXY_HOST PROXY_PORT TARGET_HOST "
                    "TARGET_PORT [-c CONC] [-d SECONDS] [-n HOLD]\n");
    exit(2);
}

static void addr(struct sockaddr_in *a, const char *host, const char *port) {
    memset(a, 0, sizeof *a);
    a->sin_family = AF_INET;
    a->sin_port = htons((unsigned short)atoi(port));
    if (inet_pton(AF_INET, host, &a->sin_addr) != 1) usage();
}

int main(int argc, char **argv) {
    if (argc < 6) usage();
    if (!strcmp(argv[1], "direct")) mode = DIRECT;
    else if (!strcmp(argv[1], "connect")) mode = CONNECT;
    else if (!strcmp(argv[1], "socks5")) mode = SOCKS5;
    else usage();
    addr(&proxy_addr, argv[2], argv[3]);
    addr(&target_addr, argv[4], argv[5]);
    int conc = 50;
    double duration = 5;
    for (int i = 6; i + 1 < argc; i += 2) {
        if (!strcmp(argv[i], "-c")) conc = atoi(argv[i + 1]);
        else if (!strcmp(argv[i], "-d")) duration = atof(argv[i + 1]);
        else if (!strcmp(argv[i], "-n")) hold = atoi(argv[i + 1]);
        else usage();
    }
    if (hold) conc = hold;
    if (conc <= 0 || duration <= 0) usage();
    const char *th = argv[4], *tp = argv[5];
    connect_len = (size_t)snprintf(connect_req, sizeof connect_req,
                                   "CONNECT %s:%s HTTP/1.1\r\nHost: %s:%s\r\n\r\n", th, tp, th, tp);
    get_len = (size_t)snprintf(get_req, sizeof get_req,
                               "GET / HTTP/1.1\r\nHost: %s:%s\r\nConnection: close\r\n\r\n", th, tp);
    get_keepalive_len = (size_t)snprintf(get_keepalive, sizeof get_keepalive,
                                         "GET / HTTP/1.1\r\nHost: %s:%s\r\n\r\n", th, tp);
    memcpy(socks_req, "\x05\x01\x00\x01", 4);
    memcpy(socks_req + 4, &target_addr.sin_addr, 4);
    memcpy(socks_req + 8, &target_addr.sin_port, 2);

    epfd = epoll_create1(EPOLL_CLOEXEC);
    struct conn *conns = calloc((size_t)conc, sizeof *conns);
    if (!conns) return 1;
    for (int i = 0; i < conc; i++) conns[i].fd = -1;
    double t0 = now(), deadline = t0 + duration;
    /* hold mode opens its tunnels RAMP at a time (idle tunnels pile up over time; a
       SYN flood of N would measure the listen backlog instead) */
    int started = 0, inflight = 0;
#define TOP_UP()                                                                             \
    while (started < conc && (!hold || inflight < RAMP)) {                                   \
        struct conn *nc = &conns[started++];                                                 \
        if (start(nc) < 0) finish(nc, 0);                                                    \
        else inflight++;                                                                     \
    }
    TOP_UP();
    struct epoll_event evs[256];
    int ready = 0, reported = 0;
    for (;;) {
        double t = now();
        if (t >= deadline) break;
        if (hold && !reported && ready + errors >= hold) {
            printf("ready %d errors %ld\n", ready, errors);
            fflush(stdout);
            reported = 1;
        }
        if (reported) { /* hold until stdin closes or the deadline */
            struct pollfd p = {.fd = 0, .events = POLLIN};
            int ms = (int)((deadline - t) * 1000) + 1;
            if (poll(&p, 1, ms < 200 ? ms : 200) > 0) {
                char tmp[64];
                if (read(0, tmp, sizeof tmp) <= 0) break;
            }
            continue;
        }
        int n = epoll_wait(epfd, evs, 256, 100);
        for (int i = 0; i < n; i++) {
            struct conn *c = evs[i].data.ptr;
            if (c->fd < 0) continue;
            int st = on_event(c, evs[i].events);
            if (st == 0) continue;
            if (hold) {
                if (st > 0) ready++;
                else if (c->st == ST_IDLE) {
                    ready--;
                    finish(c, 0);
                    continue;
                } else finish(c, 0);
                inflight--;
                TOP_UP();
                continue;
            }
            finish(c, st > 0);
            if (now() < deadline && start(c) < 0) finish(c, 0);
        }
        t = now();
        for (int i = 0; i < conc; i++) { /* per-connection timeout */
            struct conn *c = &conns[i];
            if (c->fd >= 0 && c->st != ST_IDLE && t - c->started > CONN_TIMEOUT) {
                finish(c, 0);
                if (hold) inflight--;
                else if (t < deadline && start(c) < 0) finish(c, 0);
            }
        }
        if (hold) TOP_UP();
    }
    double elapsed = now() - t0;
    if (hold) {
        if (!reported) printf("ready %d errors %ld\n", ready, errors);
        long lost = 0; /* idle tunnels the proxy closed while we held them */
        for (int i = 0; i < conc; i++) {
            if (conns[i].fd < 0) continue;
            struct pollfd p = {.fd = conns[i].fd, .events = POLLIN};
            if (poll(&p, 1, 0) > 0) lost++;
            close(conns[i].fd);
        }
        printf("held %.1f lost %ld\n", elapsed, lost);
        return 0;
    }
    printf("done %ld errors %ld seconds %.2f rate %.0f\n", done_count, errors, elapsed,
           (double)done_count / elapsed);
    return 0;
}
