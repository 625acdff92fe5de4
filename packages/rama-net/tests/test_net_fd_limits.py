"""File-descriptor exhaustion (RLIMIT_NOFILE lowered in a subprocess): relay fallback, accept."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest

BACKENDS = pytest.mark.parametrize("backend", ["asyncio", "trio"])

# Runs in a child: connected loopback pairs, then every fd below a lowered
# RLIMIT_NOFILE taken, then `spare` of them given back, then forward().
RELAY = textwrap.dedent(
    """
    import logging, os, resource, socket, sys, threading
    import anyio
    from rama_net import forward, wrap_socket

    backend, spare = sys.argv[1], int(sys.argv[2])
    logging.basicConfig(level=logging.WARNING, format="%(name)s %(levelname)s %(message)s")
    PAYLOAD = os.urandom(3 << 20)

    def pair():
        with socket.create_server(("127.0.0.1", 0)) as srv:
            a = socket.create_connection(srv.getsockname())
            b, _ = srv.accept()
        return a, b

    async def main():
        client, relay_left = pair()
        relay_right, upstream = pair()
        left, right = await wrap_socket(relay_left), await wrap_socket(relay_right)
        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        resource.setrlimit(resource.RLIMIT_NOFILE, (256, hard))
        taken = []
        while True:
            try:
                taken.append(os.dup(0))
            except OSError:
                break
        for fd in taken[len(taken) - spare:]:
            os.close(fd)

        def echo_upstream():  # reads to EOF, echoes, then half-closes
            got = bytearray()
            while chunk := upstream.recv(1 << 16):
                got += chunk
            upstream.sendall(got)
            upstream.shutdown(socket.SHUT_WR)

        def client_side(out):
            client.sendall(PAYLOAD)
            client.shutdown(socket.SHUT_WR)
            got = bytearray()
            while chunk := client.recv(1 << 16):
                got += chunk
            out.append(bytes(got))

        out = []
        threads = [
            threading.Thread(target=echo_upstream),
            threading.Thread(target=client_side, args=(out,)),
        ]
        for t in threads:
            t.start()
        with anyio.fail_after(20):
            stats = await forward(left, right)
        for t in threads:
            await anyio.to_thread.run_sync(t.join)
        assert out == [PAYLOAD], "relay lost or mangled bytes"
        up, down = stats.left_to_right, stats.right_to_left
        print(f"zero_copy={stats.zero_copy} error={stats.error!r} up={up} down={down}")

    anyio.run(main, backend=backend)
    """
)


def _run(script: str, *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", script, *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


@BACKENDS
def test_relay_falls_back_to_the_copy_loop_when_no_pipe_can_be_had(backend: str) -> None:
    # two spare fds: the socket duplicates succeed, both pipe2 calls hit EMFILE
    done = _run(RELAY, backend, "2")
    assert done.returncode == 0, done.stderr
    size = 3 << 20
    assert f"zero_copy=True error=None up={size} down={size}" in done.stdout, done.stdout
    warnings = [line for line in done.stderr.splitlines() if "rama.net.forward WARNING" in line]
    # both directions fell back; the second one within 10 s is counted, not logged
    assert len(warnings) == 1, done.stderr
    assert "pipe failed" in warnings[0]
    assert "Too many open files" in warnings[0]
    assert "Traceback" not in done.stderr


@BACKENDS
def test_relay_takes_the_copy_path_when_no_dup_can_be_had(backend: str) -> None:
    done = _run(RELAY, backend, "0")
    assert done.returncode == 0, done.stderr
    size = 3 << 20
    assert f"zero_copy=False error=None up={size} down={size}" in done.stdout, done.stdout
    assert "dup failed" in done.stderr
    assert "Traceback" not in done.stderr


ACCEPT = textwrap.dedent(
    """
    import logging, os, resource, socket, sys
    import anyio
    from anyio.abc import ByteStream
    from rama_core import Context, service_fn
    from rama_net import TcpListener

    backend = sys.argv[1]
    logging.basicConfig(level=logging.WARNING, format="%(name)s %(levelname)s %(message)s")

    @service_fn
    async def hello(ctx: Context, stream: ByteStream) -> None:
        await stream.send(b"hi")

    async def main():
        listener = TcpListener.bind("127.0.0.1:0")
        listener._accept_warning.interval = 0.7  # the default 10 s, shortened for the test
        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        resource.setrlimit(resource.RLIMIT_NOFILE, (256, hard))
        client = socket.create_connection(listener.local_addr.to_sockaddr()[:2])
        taken = []
        while True:
            try:
                taken.append(os.dup(0))
            except OSError:
                break
        async with anyio.create_task_group() as tg:
            tg.start_soon(listener.serve, hello)
            await anyio.sleep(1.5)  # accept() fails with EMFILE, retried every 100 ms
            for fd in taken:
                os.close(fd)
            client.settimeout(5)
            assert await anyio.to_thread.run_sync(client.recv, 2) == b"hi"  # recovered
            listener.close()
        print("served")

    anyio.run(main, backend=backend)
    """
)


@BACKENDS
def test_accept_at_emfile_warns_rate_limited_with_a_count(backend: str) -> None:
    done = _run(ACCEPT, backend)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "served"
    warnings = [line for line in done.stderr.splitlines() if "rama.net.tcp WARNING" in line]
    # ~15 failed accepts in 1.5 s; before, one WARNING each
    assert 2 <= len(warnings) <= 3, done.stderr
    assert "accept on 127.0.0.1:" in warnings[0]
    assert "Too many open files" in warnings[0]
    assert "more since the last report" in warnings[1]


def test_default_max_connections_follows_rlimit_nofile() -> None:
    script = textwrap.dedent(
        """
        import resource
        from rama_net import TcpServerConfig, default_max_connections
        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        for limit in (256, 1024, min(hard, 1 << 20)):
            resource.setrlimit(resource.RLIMIT_NOFILE, (limit, hard))
            print(limit, default_max_connections(), TcpServerConfig().max_connections)
        """
    )
    done = _run(script)
    assert done.returncode == 0, done.stderr
    rows = [tuple(map(int, line.split())) for line in done.stdout.splitlines()]
    assert rows[0] == (256, 96, 96)  # (256 - 64) / 2: two fds per connection
    assert rows[1] == (1024, 480, 480)
    assert rows[2][1] == rows[2][2] == min(10_000, (rows[2][0] - 64) // 2)
