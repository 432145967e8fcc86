"""`etcdlite txn`: transactions in etcdctl's text syntax, from stdin or interactively.

    compares (one per line, blank line ends):    mod("key1") > "0"
                                                  value("key2") = "x"
    success requests (blank line ends):           put key1 "new value"
                                                  get key2 --prefix
    failure requests (blank line or EOF ends):    del key1

Compare targets: value/val, version/ver, create/c, mod/m, lease; results = != < >.
Operands of numeric targets are integers (quotes allowed). Requests use the
same words and flags as the `get`, `put` and `del` commands.
"""

from __future__ import annotations

import re
import shlex
import sys

import click

from cluster import cli_output as out
from cluster.cli_common import Settings, arg_bytes, write_out_option
from cluster.client_requests import Compare, Op
from cluster.client_types import DeleteResult, PutResult, RangeResult, TxnResult
from cluster.errors import BadRequestError

_TARGETS = {"value": "value", "val": "value", "version": "version", "ver": "version",
            "create": "create", "c": "create", "mod": "mod", "m": "mod", "lease": "lease"}
_COMPARE = re.compile(r'^\s*(\w+)\("((?:[^"\\]|\\.)*)"\)\s*(=|!=|<|>)\s*(.+?)\s*$')


def parse_compare(line: str) -> Compare:
    """One etcdctl compare line, e.g. `mod("k") > "0"` or `value("k") = "v"`."""
    m = _COMPARE.match(line)
    if m is None or m.group(1) not in _TARGETS:
        raise BadRequestError(f"malformed compare {line.strip()!r}")
    target, key, result, operand = _TARGETS[m.group(1)], m.group(2), m.group(3), m.group(4)
    words = shlex.split(operand)
    if len(words) != 1:
        raise BadRequestError(f"compare operand must be one value: {operand!r}")
    raw = bytes(key, "utf-8").decode("unicode_escape").encode("latin-1")
    if target == "value":
        return Compare.value(raw, result, arg_bytes(words[0]))
    try:
        number = int(words[0], 16) if target == "lease" else int(words[0])
    except ValueError:
        raise BadRequestError(f"compare operand of {target} must be a number") from None
    return getattr(Compare, target)(raw, result, number)


def parse_request(line: str) -> Op:
    """One request line: `put KEY VALUE [--prev-kv]`, `get KEY [END] [flags]`, `del KEY [END]`."""
    words = shlex.split(line)
    if not words:
        raise BadRequestError("empty request")
    verb, args = words[0], words[1:]
    flags = {a for a in args if a.startswith("--")}
    plain = [a for a in args if not a.startswith("--")]
    if verb == "put" and len(plain) == 2 and flags <= {"--prev-kv", "--ignore-lease"}:
        return Op.put(arg_bytes(plain[0]), arg_bytes(plain[1]), prev_kv="--prev-kv" in flags)
    if verb == "get" and 1 <= len(plain) <= 2 and flags <= {"--prefix", "--from-key",
                                                            "--keys-only", "--count-only"}:
        end = arg_bytes(plain[1]) if len(plain) == 2 else None
        return Op.get(arg_bytes(plain[0]), range_end=end, prefix="--prefix" in flags,
                      from_key="--from-key" in flags, keys_only="--keys-only" in flags,
                      count_only="--count-only" in flags)
    if verb in ("del", "delete") and 1 <= len(plain) <= 2 and flags <= {"--prefix",
                                                                         "--from-key",
                                                                         "--prev-kv"}:
        end = arg_bytes(plain[1]) if len(plain) == 2 else None
        return Op.delete(arg_bytes(plain[0]), range_end=end, prefix="--prefix" in flags,
                         from_key="--from-key" in flags, prev_kv="--prev-kv" in flags)
    raise BadRequestError(f"malformed request {line.strip()!r}")


def parse_txn_text(text: str) -> tuple[list[Compare], list[Op], list[Op]]:
    """Split etcdctl's three blank-line-separated sections and parse each line."""
    sections: list[list[str]] = [[], [], []]
    current = 0
    for line in text.splitlines():
        if not line.strip():
            current += 1  # each blank line ends one section, as etcdctl reads them
            continue
        if current > 2:
            raise BadRequestError("a txn has three sections: compares, success, failure")
        sections[current].append(line)
    compares = [parse_compare(line) for line in sections[0]]
    success = [parse_request(line) for line in sections[1]]
    failure = [parse_request(line) for line in sections[2]]
    return compares, success, failure


def _read_interactive() -> str:
    parts = []
    for title in ("compares", "success requests (get, put, del)",
                  "failure requests (get, put, del)"):
        click.echo(f"{title}:", err=True)
        lines = []
        while (line := sys.stdin.readline()) and line.strip():
            lines.append(line.rstrip("\n"))
        parts.append("\n".join(lines))
    return "\n\n".join(p if p else "" for p in parts) + "\n"


def print_txn(fmt: str, r: TxnResult) -> None:
    if fmt == "json":
        out.echo_json({"header": out.header_json(r.header), "succeeded": r.succeeded,
                       "responses_count": len(r.responses)})
        return
    click.echo("SUCCESS" if r.succeeded else "FAILURE")
    for resp in r.responses:
        click.echo("")
        if isinstance(resp, PutResult):
            out.print_put("simple", resp)
        elif isinstance(resp, RangeResult):
            out.print_get("simple", resp, keys_only=False, count_only=False, value_only=False)
        elif isinstance(resp, DeleteResult):
            out.print_delete("simple", resp)
        else:
            print_txn("simple", resp)


@click.command("txn")
@click.option("-i", "--interactive", is_flag=True, help="Prompt for each section.")
@write_out_option
@click.pass_obj
def txn_cmd(s: Settings, interactive: bool) -> None:
    """Run a transaction read from stdin in etcdctl's syntax.

    \b
    Example:
      printf 'value("k") = "v1"\\n\\nput k v2\\n\\nget k\\n' | etcdlite txn
    """
    text = _read_interactive() if interactive else sys.stdin.read()
    compares, success, failure = parse_txn_text(text)
    with s.client() as c:
        print_txn(s.write_out, c.txn(compares, success, failure))
