"""etcdctl's txn text syntax, parsed without a cluster."""

from __future__ import annotations

import pytest

from cluster.cli_txn import parse_compare, parse_request, parse_txn_text
from cluster.errors import BadRequestError


@pytest.mark.parametrize(
    ("line", "target", "result", "operand"),
    [
        ('mod("k") > "0"', "mod", ">", 0),
        ('m("k") = 5', "mod", "=", 5),
        ('value("k") = "v 1"', "value", "=", b"v 1"),
        ('val("k") != "x"', "value", "!=", b"x"),
        ('version("k") < "3"', "version", "<", 3),
        ('c("k") = "2"', "create", "=", 2),
        ('lease("k") = "694d77aa9e38260f"', "lease", "=", 0x694D77AA9E38260F),
    ],
)
def test_compare_lines_follow_etcdctl(line: str, target: str, result: str, operand: object
                                      ) -> None:
    c = parse_compare(line)
    assert (c.key, c.target, c.result, c.operand) == (b"k", target, result, operand)


@pytest.mark.parametrize("line", ['nope("k") = "1"', 'mod(k) > 0', 'mod("k") >= "1"',
                                  'mod("k") > "x"', 'value("k") = a b'])
def test_malformed_compare_is_refused(line: str) -> None:
    with pytest.raises(BadRequestError):
        parse_compare(line)


def test_requests_accept_the_get_put_del_flags() -> None:
    assert parse_request('put k "v v"').args == {"key": b"k", "value": b"v v"}
    assert parse_request("get k --prefix").args["range_end"] == b"l"
    assert parse_request("del a z").args == {"key": b"a", "range_end": b"z"}
    with pytest.raises(BadRequestError):
        parse_request("frob k")
    with pytest.raises(BadRequestError):
        parse_request("put k")


def test_sections_are_separated_by_single_blank_lines() -> None:
    compares, success, failure = parse_txn_text('mod("k") > "0"\n\nput k v\n\nget k\n')
    assert len(compares) == 1
    assert [op.kind for op in success] == ["put"]
    assert [op.kind for op in failure] == ["range"]
    compares, success, failure = parse_txn_text("\nput k v\n")
    assert (compares, [op.kind for op in success], failure) == ([], ["put"], [])
    with pytest.raises(BadRequestError):
        parse_txn_text("\n\n\n\nput k v\n")
