"""Where the Redis server's time goes in nuvom's scripts: each section of the claim and
settle scripts, and of the record-save script they embed, timed with ``redis.call('TIME')``
while an in-process worker drains a queue.

    python benchmarks/profile_scripts.py                 # 20,000 jobs, 4 threads
    python benchmarks/profile_scripts.py --jobs 50000

A copy of each script is run with a timer mark put before each anchor below; a mark adds
the microseconds since the last one to a hash under the run's own prefix (deleted at the
end). Each mark costs the server a little (printed first, as "one mark"): a section's
number includes up to one. The save script's sections ("save ...") are summed over the
records each script saves. Lua has no profiler inside Redis; ``INFO commandstats`` gives
only a whole script. An anchor the scripts no longer contain stops the run, naming it.
The runtime and its cleanup are ``profile_paths.configure``'s.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import bench_tasks
from profile_paths import configure

from nuvom.backends.redis import joint, results
from nuvom.backends.redis import scripts as lua
from nuvom.worker import Worker

# (anchor, the section that ends there); each anchor occurs once in its script.
CLAIM = [
    ("local function before(a, b)", "set-up, due jobs promoted, queues"),
    ("-- Limits, read once per key", "reading the candidates (XRANGE, a record each)"),
    ("-- The writes. The group", "choosing (claim order, limits)"),
    ("local out = {}\nfor _, item in ipairs(chosen)", "XREADGROUP"),
    ("-- A held job waits in the delayed set", "each job claimed: attempts, owner, lease"),
    ("local RP, started = ARGV[6], ARGV[2]", "held jobs, slots, quarantine"),
    ("if #save > 4 then save_records(save) end", "RUNNING items built"),
    ("return {flagged, dead}", "RUNNING records (their time: the save sections)"),
]
SETTLE = [
    ("local now = tonumber(ARGV[2])\nlocal woke = false", "outcome records (the save sections)"),
    ("if woke then wake() end\nlocal released, cancelled", "acks and nacks"),
    ("record_cancelled(cancelled, RP, TTL, CAP, ARGV[2])\nreturn 1", "dependents resolved"),
]
SAVE = [
    ("  local skip = false", "the record's status read"),
    ("    if #dels > 0 then redis.call('HDEL', key, unpack(dels)) end", "fields sorted"),
    ("    if op == 'start' then\n", "HDEL + HSET"),
    ("    if not new then new = redis.call('HGET', key, 'status') end", "attempts list"),
    ("    -- Finished for good: expires", "history indexes"),
    ("    written[id] = FINAL[new] == true", "expiry"),
    ("  i = i + 9 + 2 * nfields", "history cap"),
]

PRELUDE = """
local PROF_KEY = ARGV[1] .. ':prof:{script}'
local function prof_now()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000000 + tonumber(t[2])
end
local prof_last = prof_now()
local function prof_mark(name)
  local now = prof_now()
  redis.call('HINCRBY', PROF_KEY, name, now - prof_last)
  prof_last = prof_now()  -- the mark's own write is not counted in the next section
end
"""


def marked(source: str, script: str, anchors: list[tuple[str, str]], tag: str = "") -> str:
    for k, (anchor, label) in enumerate(anchors):
        if source.count(anchor) != 1:
            raise SystemExit(f"the {script} script no longer has this anchor once: {anchor!r}")
        source = source.replace(anchor, f"prof_mark([[{tag}{k:02d} {label}]])\n{anchor}")
    return source


def instrument() -> None:
    """Make the joint writer register marked copies of its scripts."""
    save = marked(results.SAVE_SCRIPT, "save", SAVE, tag="save ")
    joint.SAVE_SCRIPT = save

    def wrap(build: object, script: str, anchors: list[tuple[str, str]]) -> object:
        def built(save_script: str) -> str:
            source = build(save_script)  # type: ignore[operator]
            return PRELUDE.replace("{script}", script) + marked(source, script, anchors)

        return built

    joint.lua.claim_and_start = wrap(lua.claim_and_start, "claim", CLAIM)  # type: ignore[assignment]
    joint.lua.settle_and_record = wrap(lua.settle_and_record, "settle", SETTLE)  # type: ignore[assignment]
    joint.lua.enqueue_and_record = wrap(lua.enqueue_and_record, "submit", [])  # type: ignore[assignment]
    joint.lua.cancel_and_record = wrap(lua.cancel_and_record, "cancel", [])  # type: ignore[assignment]


def one_mark_us(client: object, prefix: str) -> float:
    """What one mark costs the server, from a script of 1,000 marks."""
    body = PRELUDE.replace("{script}", "calibration") + (
        "local t0 = prof_now()\nfor _ = 1, 1000 do prof_mark('m') end\nreturn prof_now() - t0\n"
    )
    return float(client.eval(body, 0, prefix)) / 1000  # type: ignore[attr-defined]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--jobs", type=int, default=20_000)
    parser.add_argument("--threads", type=int, default=4)
    args = parser.parse_args()
    instrument()
    runtime, drop = configure("redis", Path(tempfile.mkdtemp(prefix="nuvom-prof-")))
    client, prefix = runtime.queue.client, runtime.queue.prefix
    try:
        n = args.jobs
        for start in range(0, n, 1_000):
            bench_tasks.bench_add.map([(i, i) for i in range(start, min(n, start + 1_000))])
        client.delete(f"{prefix}:prof:submit")
        started = time.perf_counter()
        Worker(workers=args.threads).run(burst=True)
        secs = time.perf_counter() - started
        print(f"drain of {n:,} jobs, {args.threads} threads, marked scripts: {n / secs:,.0f}/s")
        print(f"one mark: {one_mark_us(client, prefix):.2f} µs of server time\n")
        for script in ("claim", "settle"):
            spent = {
                k.decode(): int(v) for k, v in client.hgetall(f"{prefix}:prof:{script}").items()
            }
            print(f"{script}: {sum(spent.values()) / n:.1f} µs a job")
            for name in sorted(spent):
                print(f"  {name:52s} {spent[name] / n:6.1f}")
    finally:
        runtime.close()
        drop()


if __name__ == "__main__":
    main()
