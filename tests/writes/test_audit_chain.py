"""The audit chain against someone who can edit the files: records MACed under the audit key, a
signed head that shows a shortened end, rotation to a new file, several appending processes, and
`mcp-gateway audit verify FILE...` saying which of these it could check.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson
import pytest

from gateway.server.cli import main
from gateway.settings import Settings
from gateway.writes.audit import GENESIS, AuditLog, Head, record_mac, verify

KEY = b"audit-key-for-the-tests-3b9f0c2a"
OTHER_KEY = b"a-key-the-gateway-never-had-7d1e"

Mac = Callable[[dict[str, Any]], str]


def head_of(path: Path) -> Path:
    return path.with_name(path.name + ".head")


def write_records(path: Path, count: int, key: bytes = KEY) -> None:
    log = AuditLog.open(path, key)
    for number in range(count):
        log.write(tool="t", outcome="done", n=number)
    log.close()


def lines_of(path: Path) -> list[str]:
    return path.read_text().splitlines()


def records(path: Path) -> list[dict[str, Any]]:
    return [orjson.loads(line) for line in lines_of(path)]


def rewrite(path: Path, lines: list[str]) -> None:
    path.write_text("".join(f"{line}\n" for line in lines))


def rotate(path: Path, *, create: bool = True) -> Path:
    """What logrotate does: rename the file away, and in `create` mode put an empty one there."""
    rotated = path.with_name(path.name + ".1")
    path.rename(rotated)
    if create:
        path.touch()
    return rotated


def plain_sha256(record: dict[str, Any]) -> str:
    """What anyone can compute: the chain's hash without a key."""
    body = orjson.dumps({k: v for k, v in record.items() if k != "mac"},
                        option=orjson.OPT_SORT_KEYS)
    return hashlib.sha256(body).hexdigest()


def other_key(record: dict[str, Any]) -> str:
    return record_mac(OTHER_KEY, record)


def head_under_other_key(head: dict[str, Any]) -> str:
    """A head signed the gateway's way, but under a key it never had."""
    return Head(head["records"], head["last"], tuple(head["file"])).signed(OTHER_KEY).mac


def forge_from(path: Path, index: int, mac: Mac, **change: Any) -> None:
    """Change record `index` and re-chain it and every later record (and the head) with `mac`,
    as someone without the audit key would."""
    written = records(path)
    written[index].update(change)
    previous = written[index - 1]["mac"] if index else GENESIS
    for record in written[index:]:
        record["prev"] = previous
        record["mac"] = previous = mac(record)
    rewrite(path, [orjson.dumps(r).decode() for r in written])
    head = orjson.loads(head_of(path).read_bytes())
    head.update(records=written[-1]["seq"], last=previous)
    head["mac"] = mac({k: v for k, v in head.items() if k != "mac"})
    head_of(path).write_bytes(orjson.dumps(head))


def run_verify(capsys: pytest.CaptureFixture[str], tmp_path: Path, *files: Path,
               key: bytes | None = KEY) -> tuple[int, str, str]:
    argv = ["audit", "verify", *map(str, files)]
    if key is not None:
        key_file = tmp_path / "audit.key"
        key_file.write_bytes(key)
        argv += ["--key-file", str(key_file)]
    with pytest.raises(SystemExit) as stopped:
        main(argv)
    out, err = capsys.readouterr()
    code = stopped.value.code
    assert isinstance(code, int)
    return code, out, err


@pytest.fixture
def path(tmp_path: Path) -> Path:
    return tmp_path / "audit.log"


@pytest.fixture(autouse=True)
def _no_key_in_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("GATEWAY_AUDIT_KEY", raising=False)


# --- 1. a keyed chain -------------------------------------------------------------------------


def test_an_untouched_log_verifies_with_its_key(
        path: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    write_records(path, 5)
    code, out, err = run_verify(capsys, tmp_path, path)
    assert (code, err) == (0, "")
    assert f"{path}: 5 record(s), chain intact" in out


@pytest.mark.parametrize("mac", [plain_sha256, other_key], ids=["plain sha256", "other key"])
def test_a_record_edited_and_rechained_without_the_key_is_refused(
        path: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], mac: Mac) -> None:
    write_records(path, 5)
    forge_from(path, 1, mac, outcome="refused")
    code, out, err = run_verify(capsys, tmp_path, path)
    assert code == 1
    assert out == ""
    assert f"{path}:2: chain broken: " in err
    assert "MAC" in err


def test_verify_under_the_wrong_key_refuses_the_first_record(
        path: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    write_records(path, 3)
    code, _, err = run_verify(capsys, tmp_path, path, key=OTHER_KEY)
    assert code == 1
    assert f"{path}:1: chain broken: " in err


def test_verify_takes_the_key_from_gateway_audit_key(
        path: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str],
        monkeypatch: pytest.MonkeyPatch) -> None:
    write_records(path, 3)
    monkeypatch.setenv("GATEWAY_AUDIT_KEY", KEY.decode())
    code, out, _ = run_verify(capsys, tmp_path, path, key=None)
    assert code == 0
    assert "3 record(s), chain intact" in out


def test_a_key_file_ending_in_a_newline_holds_the_same_key(
        path: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    write_records(path, 2)
    code, _, _ = run_verify(capsys, tmp_path, path, key=KEY + b"\n")
    assert code == 0


def test_an_empty_key_file_is_a_usage_error(
        path: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    write_records(path, 2)
    code, out, err = run_verify(capsys, tmp_path, path, key=b"\n")
    assert (code, out) == (2, "")
    assert "key" in err


def test_without_a_key_verify_checks_only_the_structure_and_says_so(
        path: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    write_records(path, 3)
    forge_from(path, 1, plain_sha256, outcome="refused")
    code, out, err = run_verify(capsys, tmp_path, path, key=None)
    assert code == 3
    assert "chain intact" not in out
    assert "not authenticated" in err and "GATEWAY_AUDIT_KEY" in err


def test_without_a_key_verify_still_finds_a_removed_line(
        path: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    write_records(path, 3)
    lines = lines_of(path)
    rewrite(path, [lines[0], lines[2]])
    code, _, err = run_verify(capsys, tmp_path, path, key=None)
    assert code == 1
    assert f"{path}:2: chain broken: " in err


def test_the_audit_key_is_a_secret_of_its_own() -> None:
    settings = Settings(audit_key="k-audit-4471", secret_key="k-confirm-9902")
    assert settings.audit_key.get_secret_value() == "k-audit-4471"
    assert settings.secret_key.get_secret_value() == "k-confirm-9902"
    assert "k-audit-4471" not in repr(settings)


def test_a_record_mac_covers_every_field_and_depends_on_the_key() -> None:
    record = {"seq": 1, "tool": "t", "outcome": "done", "prev": GENESIS}
    assert record_mac(KEY, record) != record_mac(OTHER_KEY, record)
    assert record_mac(KEY, record) != record_mac(KEY, {**record, "outcome": "failed"})
    assert record_mac(KEY, record) != record_mac(KEY, {**record, "prev": "1" * 64})
    assert record_mac(KEY, record) == record_mac(KEY, {**record, "mac": "ignored"})
    assert record_mac(KEY, record) != plain_sha256(record)


@pytest.mark.parametrize(("mutate", "line", "said"), [
    (lambda lines: [lines[0], "{not json", lines[2]], 2, "not a JSON record"),
    (lambda lines: [lines[0], "[1, 2]", lines[2]], 2, "not an audit record"),
    (lambda lines: lines[1:], 1, "1 record(s) before it were removed"),
    (lambda lines: [lines[0], lines[2], lines[1]], 2, "1 record(s) before it were removed"),
    (lambda lines: [lines[0], lines[1], lines[1], lines[2]], 3, "does not follow"),
], ids=["garbage", "not a record", "first removed", "swapped", "repeated"])
def test_verify_finds_the_first_broken_link(mutate: Any, line: int, said: str) -> None:
    log = AuditLog.open(None, KEY)
    lines = [orjson.dumps(log.write(tool="t", n=i)).decode() for i in range(3)]
    verdict = verify([mutate(lines)], KEY, None)
    assert verdict.broken is not None
    assert (verdict.broken.file, verdict.broken.line) == (0, line)
    assert said in verdict.broken.what


def test_blank_lines_do_not_break_the_chain() -> None:
    log = AuditLog.open(None, KEY)
    lines = [orjson.dumps(log.write(tool="t", n=i)).decode() for i in range(3)]
    verdict = verify([[lines[0], "", lines[1], lines[2]]], KEY, None)
    assert (verdict.records, verdict.broken) == (3, None)


# --- 2. a signed head: a shortened end shows --------------------------------------------------


@pytest.mark.parametrize("removed", [1, 2, 5])
def test_removing_the_last_records_is_reported(
        path: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], removed: int) -> None:
    write_records(path, 5)
    rewrite(path, lines_of(path)[:5 - removed])
    code, out, err = run_verify(capsys, tmp_path, path)
    assert code == 1
    assert out == ""
    assert f"{head_of(path)}: chain broken: the last {removed} record(s) were removed" in err


def test_the_gap_stays_visible_after_the_next_append(
        path: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    write_records(path, 5)
    rewrite(path, lines_of(path)[:3])
    write_records(path, 1)
    code, _, err = run_verify(capsys, tmp_path, path)
    assert code == 1
    assert f"{path}:4: chain broken: 2 record(s) before it were removed" in err
    assert records(path)[-1]["seq"] == 6


@pytest.mark.parametrize("mac", [plain_sha256, head_under_other_key],
                         ids=["plain sha256", "other key"])
def test_a_head_rewritten_to_match_a_shortened_log_is_refused(
        path: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], mac: Mac) -> None:
    write_records(path, 5)
    rewrite(path, lines_of(path)[:3])
    last = records(path)[-1]
    head = orjson.loads(head_of(path).read_bytes())
    head.update(records=last["seq"], last=last["mac"])
    head["mac"] = mac({k: v for k, v in head.items() if k != "mac"})
    head_of(path).write_bytes(orjson.dumps(head))
    code, _, err = run_verify(capsys, tmp_path, path)
    assert code == 1
    assert f"{head_of(path)}: chain broken: " in err


def test_a_missing_head_is_reported_as_not_checked(
        path: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    write_records(path, 3)
    head_of(path).unlink()
    code, _, err = run_verify(capsys, tmp_path, path)
    assert code == 3
    assert "no head" in err


def test_a_head_that_is_not_json_is_refused(
        path: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    write_records(path, 3)
    head_of(path).write_text("{broken")
    code, _, err = run_verify(capsys, tmp_path, path)
    assert code == 1
    assert f"{head_of(path)}: chain broken: " in err


def test_the_head_names_the_last_record_and_is_replaced_whole(path: Path) -> None:
    log = AuditLog.open(path, KEY)
    log.write(tool="t", n=0)
    with head_of(path).open("rb") as earlier:
        was = head_of(path).read_bytes()
        log.write(tool="t", n=1)
        # a new file renamed over the old one: who had the old one open still reads it whole
        assert earlier.read() == was != head_of(path).read_bytes()
    log.close()
    head = orjson.loads(head_of(path).read_bytes())
    assert (head["records"], head["last"]) == (2, records(path)[-1]["mac"])
    assert sorted(p.name for p in path.parent.iterdir()) == [
        "audit.log", "audit.log.head", "audit.log.lock"]


def test_a_head_one_record_behind_is_accepted_with_a_note(
        path: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    write_records(path, 4)
    behind = head_of(path).read_bytes()
    write_records(path, 1)
    head_of(path).write_bytes(behind)  # the writer stopped between the record and its head
    code, out, _ = run_verify(capsys, tmp_path, path)
    assert code == 0
    assert "5 record(s), chain intact" in out
    assert "1 record(s) past its head" in out


# --- 3. rotation ------------------------------------------------------------------------------


@pytest.mark.parametrize("create", [True, False], ids=["create", "nocreate"])
def test_a_log_renamed_away_continues_in_a_new_file(
        path: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], create: bool) -> None:
    log = AuditLog.open(path, KEY)
    for number in range(3):
        log.write(tool="t", n=number)
    rotated = rotate(path, create=create)
    for number in range(3, 5):
        log.write(tool="t", n=number)
    log.close()
    old, new = records(rotated), records(path)
    assert [r["seq"] for r in old] == [1, 2, 3]
    assert [r["seq"] for r in new] == [4, 5, 6]
    assert new[0]["rotation"] == {"previous_records": 3}
    assert new[0]["prev"] == old[-1]["mac"]
    assert "tool" not in new[0]
    code, out, _ = run_verify(capsys, tmp_path, rotated, path)
    assert code == 0
    assert f"{rotated}, {path}: 6 record(s), chain intact" in out


def test_the_newest_file_alone_verifies_and_says_it_continues_an_earlier_one(
        path: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    write_records(path, 3)
    rotate(path)
    write_records(path, 2)
    code, out, _ = run_verify(capsys, tmp_path, path)
    assert code == 0
    assert "3 record(s), chain intact" in out
    assert "continues the chain of an earlier file after record 3" in out


@pytest.mark.parametrize(("damage", "where", "said"), [
    ("shorten old", "new:1", "1 record(s) before it were removed"),
    ("reverse order", "old:1", "does not follow"),
    ("drop rotation record", "new:1", "before it were removed"),
], ids=["old file shortened", "files out of order", "rotation record removed"])
def test_damage_across_rotated_files_is_reported(
        path: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str],
        damage: str, where: str, said: str) -> None:
    write_records(path, 3)
    rotated = rotate(path)
    write_records(path, 2)
    files = [rotated, path]
    if damage == "shorten old":
        rewrite(rotated, lines_of(rotated)[:-1])
    elif damage == "reverse order":
        files.reverse()
    else:
        rewrite(path, lines_of(path)[1:])
    code, _, err = run_verify(capsys, tmp_path, *files)
    named = {"old": rotated, "new": path}[where.split(":")[0]]
    assert code == 1
    assert f"{named}:{where.split(':')[1]}: chain broken: " in err
    assert said in err


def test_an_empty_file_just_after_rotation_needs_the_earlier_file(
        path: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    write_records(path, 3)
    rotated = rotate(path)
    alone = run_verify(capsys, tmp_path, path)
    together = run_verify(capsys, tmp_path, rotated, path)
    assert alone[0] == 3
    assert "earlier file" in alone[2]
    assert together[0] == 0
    assert "3 record(s), chain intact" in together[1]


def test_an_emptied_file_is_a_shortened_log_not_a_rotation(
        path: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    write_records(path, 3)
    path.write_bytes(b"")  # same file, contents gone
    code, _, err = run_verify(capsys, tmp_path, path)
    assert code == 1
    assert "the last 3 record(s) were removed" in err
    write_records(path, 1)
    assert "rotation" not in records(path)[0]
    assert run_verify(capsys, tmp_path, path)[0] == 1


def test_rotation_is_followed_when_the_head_went_with_the_file(
        path: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    log = AuditLog.open(path, KEY)
    for number in range(3):
        log.write(tool="t", n=number)
    rotated = rotate(path)
    head_of(path).rename(head_of(rotated))  # a rotation pattern that matched the head too
    log.write(tool="t", n=3)
    log.close()
    assert records(path)[0]["rotation"] == {"previous_records": 3}
    code, _, _ = run_verify(capsys, tmp_path, rotated, path)
    assert code == 0


def test_two_writers_across_a_rotation_keep_one_chain(
        path: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    first, second = AuditLog.open(path, KEY), AuditLog.open(path, KEY)
    first.write(tool="t", n=0)
    second.write(tool="t", n=1)
    rotated = rotate(path)
    second.write(tool="t", n=2)
    first.write(tool="t", n=3)
    first.close()
    second.close()
    assert [r.get("n") for r in records(path)] == [None, 2, 3]
    code, out, _ = run_verify(capsys, tmp_path, rotated, path)
    assert code == 0
    assert "5 record(s), chain intact" in out


# --- 4. several processes ---------------------------------------------------------------------


def append_in_processes(path: Path, workers: int, each: int, rotate_after: int | None) -> None:
    """`workers` processes append `each` records as fast as they can; the first renames the
    file away after its `rotate_after`-th record, as logrotate would, without taking the lock."""
    children = []
    for worker in range(workers):
        pid = os.fork()
        if pid == 0:  # a worker process
            code = 1
            try:
                log = AuditLog.open(path, KEY)
                for number in range(each):
                    log.write(tool="t", worker=worker, n=number)
                    if worker == 0 and number + 1 == rotate_after:
                        rotate(path, create=False)
                log.close()
                code = 0
            finally:
                os._exit(code)
        children.append(pid)
    assert all(os.waitpid(pid, 0)[1] == 0 for pid in children)


def test_processes_appending_at_once_keep_one_chain(
        path: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    append_in_processes(path, workers=3, each=40, rotate_after=None)
    code, out, _ = run_verify(capsys, tmp_path, path)
    assert code == 0
    assert "120 record(s), chain intact" in out
    assert orjson.loads(head_of(path).read_bytes())["records"] == 120


def test_processes_appending_through_a_rotation_keep_one_chain(
        path: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    append_in_processes(path, workers=3, each=40, rotate_after=20)
    rotated = path.with_name(path.name + ".1")
    code, out, _ = run_verify(capsys, tmp_path, rotated, path)
    assert code == 0
    assert "121 record(s), chain intact" in out  # 120 and the rotation record
    assert sum(1 for r in records(path) + records(rotated) if "rotation" in r) == 1
