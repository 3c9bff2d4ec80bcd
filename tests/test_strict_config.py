"""One strict-config mechanism (e2e_drive.strict) for scenario, camera, condition, agent, planner, learning tables."""

from __future__ import annotations

import inspect
import tomllib
from dataclasses import dataclass
from pathlib import Path

import pytest

from e2e_drive import config as config_module
from e2e_drive import strict
from e2e_drive.agents.loading import load_agent
from e2e_drive.agents.modular.planning import PlannerConfig, RulePlanner
from e2e_drive.errors import ConfigError
from e2e_drive.sensors.conditions import SensorConditions
from e2e_drive.sensors.spec import CameraSpec
from e2e_drive.strict import Key, check_keys, check_type, from_table, setting, to_table

REPO = Path(__file__).resolve().parents[1]


@dataclass(frozen=True)
class Demo:
    speed_mps: float = setting(10.0, "cruise speed", unit="m/s", range=(0.0, 50.0))
    lanes: int = setting(2, "lanes", range=(1, None))
    mode: str = setting("fast", "how", choices=("fast", "slow"))
    sizes: tuple[int, ...] = (1, 2)
    pair: tuple[float, float] = (0.0, 1.0)
    enabled: bool = True
    path: Path | None = None

    def __post_init__(self) -> None:
        if self.sizes and self.sizes[0] > 100:
            raise strict.invalid("sizes", self.sizes, "first size at most 100")


def _toml(table: dict) -> str:
    """A flat table as TOML text (bool, int, float, str, lists of those; None left out)."""
    def value(v):
        if isinstance(v, bool):
            return "true" if v else "false"
        if isinstance(v, (int, float)):
            return repr(v)
        if isinstance(v, str):
            return '"' + v.replace("\\", "\\\\").replace('"', '\\"') + '"'
        return "[" + ", ".join(value(x) for x in v) + "]"
    return "".join(f"{k} = {value(v)}\n" for k, v in table.items() if v is not None)


# ------------------------------------------------------------------------- the mechanism itself


def test_unknown_key_suggests_the_closest_known_key():
    with pytest.raises(ConfigError) as err:
        from_table(Demo, {"speed_mp": 3}, "agents/x.toml: params.demo")
    assert str(err.value).startswith("agents/x.toml: params.demo.speed_mp = 3: unknown key 'speed_mp'; "
                                     "did you mean 'speed_mps'? (known: ")
    with pytest.raises(ConfigError, match=r"^src: unknown key 'lane_count'; did you mean 'lanes_count'\? allowed keys"):
        check_keys("src", {"lane_count": 3}, {"lanes_count": Key(int, 4, "lanes")})
    with pytest.raises(ConfigError) as err:  # nothing close: no suggestion, but the known keys
        from_table(Demo, {"zzz": 1}, "w")
    assert "did you mean" not in str(err.value) and "(known: enabled, lanes, mode" in str(err.value)


@pytest.mark.parametrize("table, message", [
    ({"lanes": "2"}, "w.lanes = '2': expected an integer"),
    ({"lanes": True}, "w.lanes = True: expected an integer"),
    ({"speed_mps": "fast"}, "w.speed_mps = 'fast': expected a number"),
    ({"enabled": 1}, "w.enabled = 1: expected true or false"),
    ({"sizes": [1, "a"]}, "w.sizes[1] = 'a': expected an integer"),
    ({"pair": [1.0]}, "w.pair = [1.0]: expected a list of 2 values"),
    ({"mode": 3}, "w.mode = 3: expected a string"),
    ({"path": 3}, "w.path = 3: expected a path (string)"),
])
def test_wrong_type_names_where_key_and_value(table, message):
    with pytest.raises(ConfigError) as err:
        from_table(Demo, table, "w")
    assert str(err.value) == message


@pytest.mark.parametrize("table, message", [
    ({"speed_mps": 60}, "w.speed_mps = 60: out of range: expected a value in [0, 50]"),
    ({"lanes": 0}, "w.lanes = 0: out of range: expected a value >= 1"),
    ({"mode": "medium"}, "w.mode = 'medium': out of range: expected one of 'fast', 'slow'"),
    ({"sizes": [500]}, "w.sizes = (500,): first size at most 100"),  # __post_init__'s own check, located
])
def test_range_and_choice_errors(table, message):
    with pytest.raises(ConfigError) as err:
        from_table(Demo, table, "w")
    assert str(err.value) == message
    with pytest.raises(ConfigError, match=r"^src: key 'n' = 9 is invalid: expected an integer in \[0, 5\]$"):
        check_keys("src", {"n": 9}, {"n": Key(int, 1, "a count", range=(0, 5))})


def test_values_are_normalised_and_defaults_kept(tmp_path):
    demo = from_table(Demo, {"speed_mps": 20, "sizes": [3, 4], "path": "a/b.pt"}, "w", base_dir=tmp_path)
    assert demo.speed_mps == 20.0 and isinstance(demo.speed_mps, float)
    assert demo.sizes == (3, 4) and demo.pair == (0.0, 1.0) and demo.path == tmp_path / "a/b.pt"
    assert from_table(Demo, None, "w") == Demo()
    with pytest.raises(ConfigError, match=r"^w = 3: expected a table$"):
        from_table(Demo, 3, "w")
    assert check_type(None, float | None, "w") is None


def test_a_dataclass_survives_a_round_trip_through_toml_text():
    demo = Demo(speed_mps=12.5, lanes=3, mode="slow", sizes=(7,), pair=(0.5, 2.0), enabled=False)
    assert from_table(Demo, tomllib.loads(_toml(to_table(demo))), "w") == demo
    for obj in (CameraSpec(kind="bev", width_px=64, height_px=64, bev_side_m=20.0),
                SensorConditions(noise_std=3.0, palette="night", latency_steps=2),
                PlannerConfig(cruise_speed_mps=25.0, politeness=0.3)):
        assert from_table(type(obj), tomllib.loads(_toml(to_table(obj))), "w") == obj


def test_one_mechanism_everywhere():
    assert config_module.Key is strict.Key and config_module.check_keys is strict.check_keys
    from e2e_drive.nets import models

    assert not hasattr(models, "dataclass_from_table")  # the torch module no longer has its own table reader
    assert list(inspect.signature(RulePlanner).parameters) == ["config"]
    assert RulePlanner.config_class is PlannerConfig


# ------------------------------------------------------------------------- each table through it


def test_camera_tables_go_through_from_table():
    table = {"kind": "dashcam", "width_px": 160, "height_px": 60, "fov_deg": 70}
    spec = CameraSpec.from_dict(table, source="envs/x.toml [config] cameras.front")
    assert spec == from_table(CameraSpec, table, "w") and spec.fov_deg == 70.0
    with pytest.raises(ConfigError) as err:
        CameraSpec.from_dict({"fov": 60}, source="envs/x.toml [config] cameras.front")
    assert str(err.value).startswith("envs/x.toml [config] cameras.front.fov = 60: unknown key 'fov'; "
                                     "did you mean 'fov_deg'?")
    with pytest.raises(ConfigError, match=r"^s.width_px = 0: must be positive$"):  # the spec's own check
        CameraSpec.from_dict({"width_px": 0}, source="s")


def test_condition_tables_go_through_from_table():
    assert SensorConditions.from_dict({"noise_std": 4}, "c") == SensorConditions(noise_std=4.0)
    with pytest.raises(ConfigError, match=r"^c.nosie_std = 3.0: unknown key 'nosie_std'; did you mean 'noise_std'\?"):
        SensorConditions.from_dict({"nosie_std": 3.0}, "c")
    with pytest.raises(ConfigError, match=r"^c.palette = 'noon': expected one of day"):
        SensorConditions.from_dict({"palette": "noon"}, "c")


def test_planner_table_goes_through_from_table(tmp_path):
    planner = load_agent(REPO / "agents" / "modular_oracle.toml").planner
    assert planner.config == PlannerConfig(cruise_speed_mps=30.0) == PlannerConfig()
    assert planner.idm == PlannerConfig().idm
    path = tmp_path / "planner.toml"
    path.write_text('type = "modular"\n[params.planner_params]\ncruise_speed = 25.0\n')
    with pytest.raises(ConfigError) as err:
        load_agent(path)
    assert str(err.value).startswith(f"{path}: params.planner_params.cruise_speed = 25.0: unknown key 'cruise_speed'; "
                                     "did you mean 'cruise_speed_mps'?")
    path.write_text('type = "modular"\n[params.planner_params]\npoliteness = 2\n')
    with pytest.raises(ConfigError, match=r"params.planner_params.politeness = 2: out of range: expected a value in"):
        load_agent(path)
    path.write_text('type = "modular"\n[params.planner_params]\nidm_time_headway_s = 2\nmin_front_gap_m = 12\n')
    loaded = load_agent(path).planner
    assert loaded.config.min_front_gap_m == 12.0 and isinstance(loaded.config.min_front_gap_m, float)
    assert loaded.idm.time_headway_s == 2.0


def test_planner_config_declares_every_field_with_a_meaning():
    rows = strict.describe_fields(PlannerConfig)
    # + lead_braking_min_mps2, lead_stop_margin_m + the route-following settings (route_*, junction giving
    # way included) + junction_* + the camera stack's lane_change_lead_braking_mps2, lead_braking_scale,
    # lead_stop_emergency_headway_s, route_lane_change_settled_s, lane_change_min_flow_gain_mps, and
    # lane_change_flow_hold_s, lane_change_flow_max_accel_mps2, lane_change_lead_braking_headway_s,
    # route_ramp_beside_lateral_m, route_exit_* + the expert's junction_entry_advance_m, junction_turn_margin_s,
    # junction_go_margin_s, route_branch_speed_mps
    assert len(rows) == 30 + 2 + 21 + 4 + 5 + 7 + 4
    for name, kind, default, unit, meaning in rows:
        assert kind == "a number" and isinstance(default, float) and meaning, name
    assert PlannerConfig(cruise_speed_mps=25).cruise_speed_mps == 25.0  # built in code: stored as a float
    with pytest.raises(ConfigError, match="planner key 'politeness' = 3"):
        PlannerConfig(politeness=3)


def test_learning_tables_go_through_from_table(tmp_path):
    from e2e_drive.learning.config import TrainConfig, read_agent_tables
    from e2e_drive.learning.models import ModelConfig

    path = tmp_path / "e2e.toml"
    path.write_text('type = "e2e"\n[params.train]\nepochs = 3\nlearning_rate = 1\n[params.model]\nfc_sizes = [8, 4]\n')
    tables = read_agent_tables(path)
    assert tables.train == TrainConfig(epochs=3, learning_rate=1.0) and tables.model.fc_sizes == (8, 4)
    model = ModelConfig(conv_channels=(8, 8, 8, 8, 8))
    assert ModelConfig.from_dict(model.to_dict()) == model
    for body, message in [
        ("[params]\nnum_thread = 2\n", f"{path}: params.num_thread = 2: unknown key 'num_thread'; "
                                        "did you mean 'num_threads'?"),
        ("[params.train]\nepoch = 3\n", f"{path}: params.train.epoch = 3: unknown key 'epoch'; did you mean 'epochs'?"),
        ("[params.train]\nepochs = 'x'\n", f"{path}: params.train.epochs = 'x': expected an integer"),
        ("[params.train]\nepochs = 0\n", f"{path}: params.train.epochs = 0: out of range: expected an integer >= 1"),
    ]:
        path.write_text('type = "e2e"\n' + body)
        with pytest.raises(ConfigError) as err:
            read_agent_tables(path)
        assert str(err.value).startswith(message)


def test_scenario_keys_go_through_check_keys():
    from e2e_drive.scenarios import validate_env_config

    with pytest.raises(ConfigError, match=r"^x: unknown key 'vehicle_count'; did you mean 'vehicles_count'\?"):
        validate_env_config("highway", {"vehicle_count": 3}, "x")
    with pytest.raises(ConfigError, match=r"^x: key 'lanes_count' = 9 is invalid: expected an integer in \[1, 8\]$"):
        validate_env_config("highway", {"lanes_count": 9}, "x")


def test_agent_file_top_level_and_params_keys(tmp_path):
    path = tmp_path / "a.toml"
    path.write_text('typ = "expert"\n')
    with pytest.raises(ConfigError, match=rf"^{path}: typ = 'expert': unknown key 'typ'; did you mean 'type'\?"):
        load_agent(path)
    path.write_text('type = "expert"\n[params]\npolicy_frequency = 5.0\n')
    with pytest.raises(ConfigError, match=r"params.policy_frequency = 5.0: unknown parameter 'policy_frequency'; "
                                          r"did you mean 'policy_frequency_hz'\?"):
        load_agent(path)
