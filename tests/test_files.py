"""Every shipped scenario and agent file loads and validates, from the CLI as a user would."""

from __future__ import annotations

from pathlib import Path

import pytest

from e2e_drive.agents.loading import load_agent_file
from e2e_drive.cli import main
from e2e_drive.scenarios import load_scenario

REPO = Path(__file__).resolve().parents[1]
SCENARIO_FILES = sorted((REPO / "envs").glob("*.toml"))
AGENT_FILES = sorted((REPO / "agents").glob("*.toml"))


def test_there_are_files_to_check():
    assert len(SCENARIO_FILES) >= 5 and len(AGENT_FILES) >= 1


@pytest.mark.parametrize("path", SCENARIO_FILES, ids=lambda p: p.name)
def test_scenario_file_validates(path):
    sf = load_scenario(path)
    assert sf.env_id.startswith("e2e_drive/")


@pytest.mark.parametrize("path", AGENT_FILES, ids=lambda p: p.name)
def test_agent_file_builds_an_agent(path):
    agent = load_agent_file(path)
    assert callable(agent.reset) and callable(agent.act)


def test_validate_command_checks_both_kinds(capsys, tmp_path):
    files = [str(p) for p in SCENARIO_FILES + AGENT_FILES]
    assert main(["validate", *files]) == 0
    out = capsys.readouterr().out
    assert out.count("ok: ") == len(files) and "(scenario)" in out and "(agent)" in out
    bad = tmp_path / "bad_agent.toml"
    bad.write_text('type = "expert"\nparamz = {}\n')
    assert main(["validate", str(bad)]) == 2
    assert "paramz" in capsys.readouterr().err


def test_shipped_checkpoint_card_matches_its_recipe_and_agent_file():
    """The model card of agents/checkpoints/e2e_default.pt names the commands of the recipe script as it
    is now (so the script cannot drift from what was shipped) and the network of agents/e2e.toml."""
    import json
    import tomllib

    card = json.loads((REPO / "agents/checkpoints/e2e_default.json").read_text())
    script = REPO / "agents/checkpoints/make_e2e_default.sh"
    commands = [line.strip() for line in script.read_text().splitlines()
                if line.strip() and not line.lstrip().startswith(("#", "set "))]
    assert card["recipe"]["commands"] == commands
    assert card["checkpoint"] == "e2e_default.pt"
    assert card["size_bytes"] == (REPO / "agents/checkpoints/e2e_default.pt").stat().st_size
    model = tomllib.loads((REPO / "agents/e2e.toml").read_text())["params"]["model"]
    assert {k: card["model_config"][k] for k in model} == model
