from stratcast.daemon.zap import _answer, admit


def test_ipc_peers_are_admitted_by_uid_only():
    assert admit(b"NULL", b"localhost:1000:1000:4242", [], {1000}, set())
    assert not admit(b"NULL", b"localhost:1001:1000:4242", [], {1000}, set())
    assert not admit(b"NULL", b"localhost:x:1000:4242", [], {1000}, set())


def test_tcp_needs_a_listed_curve_key():
    assert not admit(b"NULL", b"127.0.0.1", [], {0}, set())
    assert admit(b"CURVE", b"127.0.0.1", [b"k" * 32], set(), {b"k" * 32})
    assert not admit(b"CURVE", b"127.0.0.1", [b"x" * 32], set(), {b"k" * 32})
    assert not admit(b"PLAIN", b"127.0.0.1", [b"user", b"pw"], {0}, {b"k" * 32})


def test_zap_replies_follow_rfc27_and_refuse_malformed_requests():
    ok = _answer([b"1.0", b"7", b"stratcast", b"localhost:5:5:1", b"", b"NULL"], {5}, set())
    assert ok[:3] == [b"1.0", b"7", b"200"]
    denied = _answer([b"1.0", b"8", b"stratcast", b"localhost:6:5:1", b"", b"NULL"], {5}, set())
    assert denied[2] == b"400"
    assert _answer([b"1.0"], {5}, set())[2] == b"400"
