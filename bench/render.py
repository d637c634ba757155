"""Render benchmark: N (host, user) targets from the shipped example profiles.

Times load (YAML + inventory validation), resolve (layering + profile validation),
render (secrets + Jinja2 + read-back checks) and write (UTF-16 files, staged and renamed)
separately, for 1,000 and 10,000 targets, each in a fresh process so its peak memory
is its own. Goal: 10,000 targets in under 5 s in all, growing linearly.

    python bench/render.py                 # both sizes, a table
    python bench/render.py --targets 2500  # one size
"""

from __future__ import annotations

import argparse
import json
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
LIMIT_SECONDS = 5.0
GROUPS = [["sales"], ["support"], ["sales", "lyon"], ["support", "lyon"]]


def make_inventory(folder: Path, targets: int) -> tuple[Path, dict[str, str]]:
    """Two users per host across the example groups; every 10th host has its own override."""
    lines = [
        "defaults:",
        "  profiles: [base]",
        "groups:",
        "  sales: {profiles: [sales]}",
        "  support: {profiles: [support]}",
        "  lyon: {profiles: [site-lyon]}",
        "hosts:",
    ]
    env = {"SIP_PW_SUPPORT_QUEUE": "queue-secret"}
    hosts = (targets + 1) // 2
    made = 0
    for h in range(hosts):
        lines.append(f"  ws-{h:05d}:")
        lines.append(f"    groups: [{', '.join(GROUPS[h % len(GROUPS)])}]")
        if h % 10 == 0:
            lines.append("    overrides: {settings: {sourcePort: 5070}}")
        lines.append("    users:")
        for _ in range(2):
            if made == targets:
                break
            ext = 10000 + made
            lines.append(
                f'      - {{name: user{made:05d}, extension: "{ext}", display_name: Zoë Müller {made}, '
                f"password: env:SIP_PW_{ext}}}"
            )
            env[f"SIP_PW_{ext}"] = f"bench-secret-{ext}"
            made += 1
    path = folder / "inventory.yaml"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path, env


def run_once(targets: int) -> dict[str, float]:
    from provision.model.store import ProfileStore
    from provision.output import render_file, write_tree
    from provision.render import Renderer, Templates
    from provision.secrets import SecretResolver
    from provision.targets import load_inventory, resolve_targets, select_hosts

    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        shutil.copytree(ROOT / "profiles", folder / "profiles", ignore=shutil.ignore_patterns("inventory"))
        inventory_path, env = make_inventory(folder, targets)
        figures: dict[str, float] = {}

        start = time.perf_counter()
        inventory = load_inventory(inventory_path)
        figures["load"] = time.perf_counter() - start

        start = time.perf_counter()
        found = resolve_targets(ProfileStore(folder / "profiles"), inventory, select_hosts(inventory.model))
        figures["resolve"] = time.perf_counter() - start

        start = time.perf_counter()
        resolver = SecretResolver(env, folder)
        renderer = Renderer(Templates(ROOT / "templates"))
        files = []
        for target in found:
            secrets = {
                a.section.lower(): resolver.resolve(a.password.ref, a.password.where)
                for a in target.accounts
                if a.password is not None
            }
            files.append(render_file(renderer.render(target), secrets))
        figures["render"] = time.perf_counter() - start

        start = time.perf_counter()
        write_tree(folder / "out", files, private=True)
        figures["write_disk"] = time.perf_counter() - start
        assert len(files) == targets and len(list((folder / "out").glob("*/*/microsip.ini"))) == targets

        # The same write to memory (tmpfs) separates provision's cost from the disk's.
        if Path("/dev/shm").is_dir():
            with tempfile.TemporaryDirectory(dir="/dev/shm") as shm:
                start = time.perf_counter()
                write_tree(Path(shm) / "out", files, private=True)
                figures["write_tmpfs"] = time.perf_counter() - start
        else:
            figures["write_tmpfs"] = figures["write_disk"]
        figures["compute"] = figures["load"] + figures["resolve"] + figures["render"]
        figures["total"] = figures["compute"] + figures["write_tmpfs"]
        figures["total_disk"] = figures["compute"] + figures["write_disk"]
        figures["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        figures["targets"] = targets
        return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--targets", type=int, help="run one size in this process and print JSON")
    args = parser.parse_args()
    if args.targets:
        print(json.dumps(run_once(args.targets)))
        return
    rows = []
    for size in (1_000, 10_000):
        out = subprocess.run(
            [sys.executable, __file__, "--targets", str(size)], capture_output=True, text=True, check=True
        )
        rows.append(json.loads(out.stdout))
    head = ["targets", "load", "resolve", "render", "write", "total", "per 1k", "| write*", "total*", "peak MB"]
    print(" ".join(f"{h:>8}" for h in head))
    for r in rows:
        cells = [r["load"], r["resolve"], r["render"], r["write_tmpfs"], r["total"], r["total"] / r["targets"] * 1000]
        disk = [r["write_disk"], r["total_disk"]]
        print(
            f"{int(r['targets']):>8} "
            + " ".join(f"{c:>7.2f}s" for c in cells)
            + "   "
            + " ".join(f"{c:>7.2f}s" for c in disk)
            + f" {r['peak_rss_mb']:>8.0f}"
        )
    print("write = to memory (tmpfs); write*/total* = to this machine's disk, whose speed for creating")
    print("folders and files varies several-fold from minute to minute on this VM")
    small, big = rows
    print(f"growth 1k -> 10k: x{big['total'] / small['total']:.1f} (linear would be x10.0)")
    print(
        f"10,000 targets: {big['total']:.2f} s against a limit of {LIMIT_SECONDS:.1f} s "
        f"(ratio {big['total'] / LIMIT_SECONDS:.2f}); on disk {big['total_disk']:.2f} s "
        f"(ratio {big['total_disk'] / LIMIT_SECONDS:.2f})"
    )


if __name__ == "__main__":
    main()
