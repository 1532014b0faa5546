"""Answers cron questions with cronsim, one JSON line in, one JSON line out.

Run through tests/tools/cronsim-oracle, which installs cronsim and tzdata.
Input:  {"id": 1, "expr": "30 2 * * *", "tz": "Europe/Berlin",
         "start": "2025-03-29T12:00:00Z", "count": 5}
Output: {"id": 1, "times": ["2025-03-30T03:00:00+02:00", ...],
         "epochs": [1743296400, ...], "exhausted": false}
    or  {"id": 1, "error": "Bad minute"}
"times" are the next `count` fire times strictly after `start`; "exhausted"
is true when cronsim stopped early (it gives up after 50 years without a
match).
"""

import json
import sys
import zoneinfo
from datetime import datetime
from importlib.metadata import version

from cronsim import CronSim, CronSimError


def answer(req: dict) -> dict:
    tz = zoneinfo.ZoneInfo(req["tz"])
    start = datetime.fromisoformat(req["start"].replace("Z", "+00:00")).astimezone(tz)
    try:
        it = CronSim(req["expr"], start)
    except CronSimError as e:
        return {"id": req["id"], "error": str(e)}
    except Exception as e:  # a cronsim bug: report it for this case only
        return {"id": req["id"], "error": f"cronsim raised {e!r}"}
    times = []
    exhausted = False
    for _ in range(req["count"]):
        try:
            times.append(next(it))
        except StopIteration:
            exhausted = True
            break
        except Exception as e:
            return {"id": req["id"], "error": f"cronsim raised {e!r} after {len(times)} times"}
    return {
        "id": req["id"],
        "times": [t.isoformat() for t in times],
        "epochs": [int(t.timestamp()) for t in times],
        "exhausted": exhausted,
    }


def main() -> None:
    # Use the pinned tzdata package, not the system's zoneinfo files: the
    # Rust side (chrono-tz) has its own, fixed tz database release.
    zoneinfo.reset_tzpath(to=[])
    want = sys.argv[1] if len(sys.argv) > 1 else None
    if want and version("tzdata") != want:
        sys.exit(f"cronsim_oracle: tzdata {version('tzdata')} installed, {want} expected")
    out = sys.stdout
    for line in sys.stdin:
        if line.strip():
            out.write(json.dumps(answer(json.loads(line))) + "\n")
    out.flush()


if __name__ == "__main__":
    main()
