#!/usr/bin/env python3
"""Check a metrics file line by line against Firecracker's metrics schema
(tests/data/firecracker-metrics-keys.json: group -> keys, "{}" marking a
latency aggregate, a group ending in "_" the shape of per-device groups).

Usage: metrics_check.py METRICS_FILE [--id ID] [--properties JSON]
  [--devices block=N,net=N]
Every line must be one JSON object with every group and key, integers
only, nothing the schema lacks except "id" and "properties" (each only if
given); "block" and "net" are the sums of their per-device groups.
Prints one line per problem and exits 1 if there was any."""

import json
import sys

SCHEMA = "tests/data/firecracker-metrics-keys.json"


def check_group(where, group, keys, problems):
    if not isinstance(group, dict):
        problems.append(f"{where}: not an object")
        return
    want = set()
    for k in keys:
        agg = k.endswith("{}")
        k = k[:-2] if agg else k
        want.add(k)
        v = group.get(k)
        if agg:
            if not isinstance(v, dict) or set(v) != {"min_us", "max_us", "sum_us"} or \
                    not all(type(x) is int and x >= 0 for x in v.values()):
                problems.append(f"{where}.{k}: not a latency aggregate: {v!r}")
        elif type(v) is not int or v < 0:
            problems.append(f"{where}.{k}: not a non-negative integer: {v!r}")
    for k in set(group) - want:
        problems.append(f"{where}.{k}: not in the schema")


def sums(groups):
    total = {}
    for g in groups:
        for k, v in g.items():
            if isinstance(v, dict):
                t = total.setdefault(k, {"min_us": 0, "max_us": 0, "sum_us": 0})
                t["sum_us"] += v["sum_us"]
            else:
                total[k] = total.get(k, 0) + v
    return total


def main():
    args = sys.argv[1:]
    path = args.pop(0)
    want_id = want_props = None
    devices = {}
    while args:
        opt, val = args.pop(0), args.pop(0)
        if opt == "--id":
            want_id = val
        elif opt == "--properties":
            want_props = json.loads(val)
        elif opt == "--devices":
            devices = {k: int(n) for k, n in (d.split("=") for d in val.split(","))}
    schema = json.load(open(SCHEMA))
    problems = []
    lines = open(path).read().splitlines()
    if not lines:
        problems.append("no metrics line at all")
    for n, text in enumerate(lines, 1):
        where = f"line {n}"
        try:
            line = json.loads(text)
        except ValueError as e:
            problems.append(f"{where}: not JSON: {e}")
            continue
        if type(line.get("utc_timestamp_ms")) is not int:
            problems.append(f"{where}: utc_timestamp_ms is not an integer")
        if line.get("id") != want_id:
            problems.append(f"{where}: id is {line.get('id')!r}, expected {want_id!r}")
        if line.get("properties") != want_props:
            problems.append(f"{where}: properties are {line.get('properties')!r}")
        for name, keys in schema.items():
            if not name.endswith("_"):
                check_group(f"{where}: {name}", line.get(name), keys, problems)
        per_device = {}
        for name, group in line.items():
            if name in schema or name in ("utc_timestamp_ms", "id", "properties"):
                continue
            prefix = next((p for p in schema if p.endswith("_") and name.startswith(p)), None)
            if prefix is None:
                problems.append(f"{where}: group {name} is not in the schema")
                continue
            check_group(f"{where}: {name}", group, schema[prefix], problems)
            per_device.setdefault(prefix[:-1], []).append(group)
        for dev, n_want in devices.items():
            got = per_device.get(dev, [])
            if len(got) != n_want:
                problems.append(f"{where}: {len(got)} {dev}_* groups, expected {n_want}")
            elif got and sums(got) != line.get(dev):
                problems.append(f"{where}: {dev} is not the sum of the {dev}_* groups")
    for p in problems[:40]:
        print(p)
    sys.exit(1 if problems else 0)


main()
