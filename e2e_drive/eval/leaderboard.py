"""``e2e-drive leaderboard``: merge result bundles of one suite version into one ranked table.

Each bundle is read with its digest checked (:func:`e2e_drive.eval.bundle.load_bundle`). All must carry the
same suite version and cover the same episodes (scenario configs, conditions, seeds): agents are ranked
only on the same paired episodes. An agent found in several bundles with the same fingerprint (the shipped
baselines, usually) is one agent; two different agents under one name are told apart by their bundle's
name. The ranking is :func:`e2e_drive.eval.ranking.ranking_tables` (rank ranges, shared where the
intervals cannot separate agents). Each bundle's verification (``e2e-drive verify`` writes it beside the
bundle) is shown; ``require_verified`` refuses a bundle without a passing one.
"""

from __future__ import annotations

import html
import json
import time
from pathlib import Path
from typing import Any, Mapping, Sequence

from e2e_drive.errors import ConfigError

__all__ = ["build_leaderboard", "write_leaderboard"]


def _bundle_name(path: str) -> str:
    p = Path(path)
    name = p.name.removesuffix(".gz").removesuffix(".json")
    return p.parent.name if name == "bundle" and p.parent.name else name


def _verification(bundle: Mapping[str, Any]) -> tuple[bool, str]:
    from e2e_drive.eval.bundle import verification_path

    path = verification_path(bundle["_path"])
    try:
        v = json.loads(path.read_text())
    except (OSError, ValueError):
        return False, "not verified"
    if v.get("bundle_digest") != bundle["digest"]:
        return False, "not verified (the verification is of another bundle)"
    ok = v.get("checked", 0) > 0 and v.get("matched") == v.get("checked")
    text = f"{v.get('matched')}/{v.get('checked')} re-run episodes match" + (" (all)" if v.get("all") else "")
    return ok, text if ok else f"FAILED: {text}"


def _episodes_signature(bundle: Mapping[str, Any]) -> dict[str, Any]:
    run = bundle["run"]
    return {"envs": {e["name"]: e["configs"] for e in run["envs"]}, "conditions": run["conditions"],
            "seeds": run["seeds"]}


def build_leaderboard(paths: Sequence[str | Path], require_verified: bool = False) -> dict[str, Any]:
    """Merge bundles; return {"suite_version", "rows" (merged episode lines), "agents": {name: info},
    "bundles": [...], "tables"}. ConfigError (one line) for a tampered bundle, another suite version,
    other episodes, or (require_verified) a bundle without a passing verification."""
    from e2e_drive.eval.bundle import load_bundle
    from e2e_drive.eval.fingerprint import first_difference
    from e2e_drive.eval.ranking import ranking_tables

    if not paths:
        raise ConfigError("leaderboard: give at least one bundle")
    bundles = [load_bundle(p) for p in paths]
    first = bundles[0]
    for b in bundles[1:]:
        if b["suite_version"] != first["suite_version"]:
            raise ConfigError(f"{b['_path']}: {b['suite_version']}, but {first['_path']} is {first['suite_version']}; "
                              f"results of different suite versions are never ranked together")
        where = first_difference(_episodes_signature(first), _episodes_signature(b))
        if where is not None:
            raise ConfigError(f"{b['_path']}: covers other episodes than {first['_path']} (differs at '{where}'); "
                              f"a leaderboard ranks agents on the same scenarios, conditions and seeds")
    agents: dict[str, dict[str, Any]] = {}
    rows: list[dict[str, Any]] = []
    seen: set[tuple] = set()
    info = []
    for b in bundles:
        verified, vtext = _verification(b)
        if require_verified and not verified:
            raise ConfigError(f"{b['_path']}: {vtext}; run e2e-drive verify {b['_path']} first")
        info.append({"bundle": b["_path"], "name": _bundle_name(b["_path"]), "verified": vtext,
                     "commit": b["toolkit"].get("commit"), "command": b.get("command"), "created": b.get("created")})
        rename: dict[str, str] = {}
        for label, entry in b["agents"].items():
            name = label
            if label in agents and agents[label]["fingerprint"] != entry.get("fingerprint"):
                name = f"{label} ({_bundle_name(b['_path'])})"
            rename[label] = name
            if name not in agents:
                agents[name] = {"fingerprint": entry.get("fingerprint"), "submitted": bool(entry.get("submitted")),
                                "bundles": [], "verified": []}
            agents[name]["bundles"].append(_bundle_name(b["_path"]))
            agents[name]["verified"].append(vtext)
        for line in b["episodes"]:
            name = rename.get(str(line["agent"]), str(line["agent"]))
            key = (name, line["scenario"], line["condition"], line["seed"])
            if key in seen:
                continue
            seen.add(key)
            rows.append({**line, "agent": name})
    marked = [a for a, e in agents.items() if e["submitted"]]
    return {"suite_version": first["suite_version"], "rows": rows, "agents": agents, "bundles": info,
            "tables": ranking_tables(rows, marked=marked)}


def _md_table(head: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    return "\n".join(["| " + " | ".join(head) + " |", "|" + "---|" * len(head),
                      *("| " + " | ".join(str(c).replace("|", "\\|") for c in r) + " |" for r in rows)])


def _html_table(head: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    e = lambda x: html.escape(str(x))  # noqa: E731
    return ("<table><thead><tr>" + "".join(f"<th>{e(h)}</th>" for h in head) + "</tr></thead><tbody>"
            + "".join("<tr>" + "".join(f"<td>{e(c)}</td>" for c in r) + "</tr>" for r in rows) + "</tbody></table>")


_NOTE = ("Rank ranges: an agent is ranked above another only when their paired difference (same scenario, "
         "condition and seed) has a 95% interval excluding zero and a Holm-corrected p < 0.05; agents that cannot "
         "be separated share ranks (2-4: somewhere from second to fourth); within one range the order is by name. "
         "`*`: a submitted agent (not a shipped baseline).")


def write_leaderboard(paths: Sequence[str | Path], out: str | Path = "leaderboard",
                      require_verified: bool = False) -> dict[str, Any]:
    """Build the leaderboard and write ``OUT/leaderboard.md`` and ``OUT/leaderboard.html``; return paths and data."""
    board = build_leaderboard(paths, require_verified)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    t = board["tables"]
    bundle_head = ["bundle", "verified", "toolkit commit", "created", "command"]
    bundle_rows = [[b["name"], b["verified"], str(b["commit"] or "?")[:10], b["created"], b["command"]]
                   for b in board["bundles"]]
    title = f"Leaderboard, {board['suite_version']}"
    md = [f"# {title}", "", f"{len(board['bundles'])} bundles, {len(board['agents'])} agents, "
          f"{len(board['rows'])} episodes; made {time.strftime('%Y-%m-%d')} by e2e-drive leaderboard.", "",
          "## Ranking by the driving score", "", _md_table(t["overall"]["head"], t["overall"]["rows"]), ""]
    html_body = [f"<h1>{html.escape(title)}</h1>", f"<p>{html.escape(md[2])}</p>",
                 "<h2>Ranking by the driving score</h2>", _html_table(t["overall"]["head"], t["overall"]["rows"])]
    if t["abilities"]["rows"]:
        md += ["## Ability scores (success % [95% Wilson interval] #rank range)", "",
               _md_table(t["abilities"]["head"], t["abilities"]["rows"]), ""]
        html_body += ["<h2>Ability scores (success % [95% Wilson interval] #rank range)</h2>",
                      _html_table(t["abilities"]["head"], t["abilities"]["rows"])]
    md += [_NOTE, "", "## Bundles", "", _md_table(bundle_head, bundle_rows), ""]
    html_body += [f"<p>{html.escape(_NOTE)}</p>", "<h2>Bundles</h2>", _html_table(bundle_head, bundle_rows)]
    md_path, html_path = out / "leaderboard.md", out / "leaderboard.html"
    md_path.write_text("\n".join(md), encoding="utf-8")
    css = ("body{font-family:system-ui,sans-serif;margin:24px auto;max-width:1200px;padding:0 16px}"
           "table{border-collapse:collapse;font-size:.9em;margin:8px 0 18px}th,td{border:1px solid #ccd;"
           "padding:3px 8px;text-align:left}th{background:#eef1f6}")
    html_path.write_text(f"<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>{html.escape(title)}"
                         f"</title><style>{css}</style></head><body>\n" + "\n".join(html_body) + "\n</body></html>\n",
                         encoding="utf-8")
    return {**board, "markdown": str(md_path), "html": str(html_path)}
