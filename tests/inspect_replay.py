"""Stands in for the inspection worker in Pilot tests: replays a recorded transcript, answers row requests from it."""

import json
import sys


def main(path: str) -> int:
    with open(path, encoding="utf-8") as handle:
        recorded = json.load(handle)
    for message in recorded["lines"]:
        print(json.dumps(message, ensure_ascii=False), flush=True)
    rows = recorded["rows"]
    for line in sys.stdin:
        row = json.loads(line)["row"]
        answer = rows.get(str(row)) or {"type": "error", "message": f"no row {row}", "row": row}
        print(json.dumps(answer, ensure_ascii=False), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
