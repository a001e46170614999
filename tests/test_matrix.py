from pathlib import Path

import pytest

from kerasmnist.errors import ConfigError
from kerasmnist.launch.matrix import SHIPPED_CONFIGS, Matrix, cells, load_matrix, matrix_from

CONFIGS = Path(__file__).parent.parent / "configs"


@pytest.mark.parametrize("name", sorted(path.stem for path in CONFIGS.glob("*.toml")))
def test_shipped_configs_are_valid_and_give_intervals(name):
    matrix = load_matrix(CONFIGS / f"{name}.toml", {})
    assert matrix.backends and matrix.models and matrix.run.progress == "epoch"
    assert matrix.rounds >= 3  # with target_ci, the minimum


def test_the_default_plan_runs_three_rounds():
    assert Matrix().rounds == load_matrix(None, {}).rounds == 3
    assert load_matrix(None, {"rounds": 5}).rounds == 5


def test_older_key_names_are_read_as_todays(tmp_path):
    path = tmp_path / "old.toml"
    path.write_text("[matrix]\nrepeats = 4\nmax_repeats = 6\ntarget_ci = 0.05\ncell_timeout_seconds = 60\n")
    matrix = load_matrix(path, {})
    assert (matrix.rounds, matrix.max_rounds, matrix.cell_timeout) == (4, 6, 60)
    assert load_matrix(path, {"rounds": 2}).rounds == 2  # the flag wins over the file, whatever name it used


def test_tf32_in_a_table_is_trains_flag():
    assert matrix_from({"run": {"tf32": True}}, {}, "t").run.float32_matmul_precision == "tf32"
    with pytest.raises(ConfigError, match="sets both tf32 and float32_matmul_precision"):
        matrix_from({"run": {"tf32": True, "float32_matmul_precision": "float32"}}, {}, "t")


def test_a_bare_name_is_a_shipped_config_from_any_folder(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert load_matrix(Path("colab-t4"), {}) == load_matrix(CONFIGS / "colab-t4.toml", {})
    assert sorted(p.name for p in SHIPPED_CONFIGS.glob("*.toml")) == sorted(p.name for p in CONFIGS.glob("*.toml"))


def test_an_unknown_bare_name_lists_the_shipped_configs():
    with pytest.raises(ConfigError) as error:
        load_matrix(Path("colab"), {})
    assert str(error.value) == ("no shipped config named 'colab'; shipped: colab-t4, full, gpu-newest, model-zoo, quick, "
                                "seed-ffn, slurm-example, tf-pipeline, torch-knobs, tuned, xla-cpu "
                                "(or give the path of a .toml file)")


def test_flags_override_the_file():
    matrix = load_matrix(CONFIGS / "full.toml", {"backends": "jax", "rounds": 2, "epochs": 2, "limit_train": None})
    assert matrix.backends == ("jax",) and matrix.rounds == 2 and matrix.run.epochs == 2
    assert matrix.devices == ("cpu", "gpu")


@pytest.mark.parametrize("text, message", [
    ("[matrix]\nbackend = ['jax']\n", "x.toml: unknown key backend in [matrix]"),
    ("[matrix]\nbackends = ['mxnet']\n", "x.toml: backends has 'mxnet'; allowed: tensorflow, torch, jax"),
    ("[matrix]\nrounds = 0\n", "x.toml: rounds must be a whole number of at least 1 (got 0)"),
    ("[matrix]\nrepeats = 'two'\n", "x.toml: rounds must be a whole number of at least 1 (got 'two')"),
    ("[matrix]\nrounds = 3\nrepeats = 3\n", "x.toml: [matrix] sets both rounds and repeats, its older name"),
    ("[matrix]\ndevices = []\n", "x.toml: devices must be a non-empty list of strings"),
    ("[run]\nepochs = 0\n", "x.toml: epochs must be at least 1 (got 0)"),
    ("[run]\nepochs = '5'\n", "x.toml: epochs expected a whole number (got '5')"),
    ("[run]\nmodel = 'cnn'\n", "x.toml: model cannot be set in [run]; list it in [matrix] models"),
    ("[run]\nwarmup = 1\n", "x.toml: unknown key warmup in [run]; allowed:"),
    ("[run]\nepochs = 1\n", "x.toml: epochs must be at least 2 to compare (got 1 for cell tensorflow cpu cnn round 1)"),
    ("[matrix]\nbackends = ['tensorflow', 'pytorch']\n",
     "x.toml: backends has 'pytorch'; allowed: tensorflow, torch, jax; did you mean 'torch'?"),
    ("[run]\ntf32 = 'yes'\n", "x.toml: tf32 expected true or false (got 'yes')"),
    ("[runs]\nepochs = 1\n", "x.toml: unknown table [runs]; allowed: [matrix], [run]"),
    ("[run\nepochs = 1\n", "x.toml: not valid TOML"),
    ("[matrix]\nbackends = ['jax', 'torch', 'jax']\n", "x.toml: backends lists 'jax' more than once"),
])
def test_bad_config_files_name_the_file_and_key(tmp_path, text, message):
    path = tmp_path / "x.toml"
    path.write_text(text)
    with pytest.raises(ConfigError) as error:
        load_matrix(path, {})
    assert str(error.value).startswith(str(tmp_path / message))


def test_missing_config_file(tmp_path):
    with pytest.raises(ConfigError, match="cannot read"):
        load_matrix(tmp_path / "nope.toml", {})


def test_cells_interleave_repeats_and_rotate_the_backend_order():
    matrix = matrix_from({"matrix": {"models": ["ffn"]}}, {}, "t")  # 3 rounds by default
    order = [(c.repeat, c.config.backend) for c in cells(matrix)]
    assert order == [
        (0, "tensorflow"), (0, "torch"), (0, "jax"),
        (1, "torch"), (1, "jax"), (1, "tensorflow"),
        (2, "jax"), (2, "tensorflow"), (2, "torch"),
    ]
    assert [c.order for c in cells(matrix)] == list(range(9))
    assert [c.config.seed for c in cells(matrix)] == [0, 0, 0, 1, 1, 1, 2, 2, 2]


def seeds_by_round(planned):
    return [sorted({c.config.seed for c in planned if c.repeat == r}) for r in sorted({c.repeat for c in planned})]


def test_a_round_new_to_the_folder_takes_seeds_no_earlier_round_used():
    """Rounds of another command in the folder (here: the same rows, the data folder spelt another way, so
    other keys) hold seeds 0 and 1: this plan's rounds take 2, 3, 4, and its earlier cells keep theirs."""
    earlier = {c.key: c.config.seed for c in cells(matrix_from({"matrix": {"rounds": 2},
                                                                 "run": {"data_dir": "data/"}}, {}, "t"))}
    plan = matrix_from({"matrix": {"rounds": 3}, "run": {"data_dir": "data"}}, {}, "t")
    fresh = cells(plan, earlier)
    assert seeds_by_round(fresh) == [[2], [3], [4]]
    half_done = {c.key: c.config.seed for c in fresh[:8]} | earlier  # interrupted in its second round
    resumed = cells(plan, half_done)
    assert [c.key for c in resumed] == [c.key for c in fresh]  # a rerun finds its done cells
    with_more = cells(matrix_from({"matrix": {"rounds": 4}, "run": {"data_dir": "data"}}, {}, "t"),
                      {c.key: c.config.seed for c in fresh} | earlier)
    assert seeds_by_round(with_more) == [[2], [3], [4], [5]]
    assert seeds_by_round(cells(plan)) == [[0], [1], [2]]  # a fresh folder: seed + round, as before


def test_cell_keys_identify_configuration_and_repeat():
    keys = [c.key for c in cells(Matrix(rounds=2))]
    assert len(set(keys)) == len(keys)
    assert keys == [c.key for c in cells(Matrix(rounds=2))]
    assert set(keys).isdisjoint(c.key for c in cells(matrix_from({"run": {"epochs": 4}}, {}, "t")))


def test_cell_keys_ignore_settings_left_at_their_defaults():
    plain = cells(matrix_from({"run": {"epochs": 2}}, {}, "t"))
    explicit = cells(matrix_from({"run": {"epochs": 2, "precision": "float32", "seed": 0}}, {}, "t"))
    assert [c.key for c in plain] == [c.key for c in explicit]


def test_implementations_are_an_axis_of_the_matrix():
    matrix = matrix_from({"matrix": {"backends": ["jax"], "models": ["ffn"], "implementations": ["keras", "native"],
                                     "rounds": 1}}, {}, "t")
    assert [c.config.implementation for c in cells(matrix)] == ["keras", "native"]
    with pytest.raises(ConfigError, match="implementation cannot be set in \\[run\\]"):
        matrix_from({"run": {"implementation": "native"}}, {}, "t")


def test_batch_sizes_are_an_axis_of_the_matrix():
    matrix = load_matrix(None, {"backends": "jax", "models": "ffn", "batch_sizes": "64,128,256", "rounds": 1})
    assert [c.config.batch_size for c in cells(matrix)] == [64, 128, 256]
    with pytest.raises(ConfigError, match="batch_sizes must be a list of whole numbers of at least 1"):
        load_matrix(None, {"batch_sizes": "64,0"})


def test_overrides_set_keys_for_the_matching_cells_only():
    matrix = matrix_from({
        "matrix": {"models": ["ffn"], "implementations": ["keras", "native"]},
        "run": {"epochs": 2},
        "overrides": [
            {"backends": ["tensorflow", "jax"], "implementations": ["keras"], "steps_per_execution": 16},
            {"backends": "jax", "implementations": "keras", "steps_per_execution": 8, "cpu_threads": 1},
        ],
    }, {}, "t")
    settings = {(c.config.backend, c.config.implementation): (c.config.steps_per_execution, c.config.cpu_threads)
                for c in cells(matrix)}
    assert settings == {("tensorflow", "keras"): (16, None), ("tensorflow", "native"): (1, None),
                        ("torch", "keras"): (1, None), ("torch", "native"): (1, None),
                        ("jax", "keras"): (8, 1), ("jax", "native"): (1, None)}  # the later override wins
    assert all(c.config.epochs == 2 for c in cells(matrix))


@pytest.mark.parametrize("overrides, message", [
    ([{"steps_per_execution": 4}], "t: steps_per_execution must be 1 under the torch backend, where Keras runs one "
                                   "batch per call (got 4) in cell torch cpu cnn keras"),
    ([{"backend": "jax", "epochs": 1}], "t [[overrides]] 1: backend is matched with backends = [...], not set"),
    ([{"models": ["mlp"], "epochs": 1}], "t [[overrides]] 1: models has 'mlp'; allowed: cnn, ffn"),
    ([{"epochs": 1}, {"models": ["cnn"]}], "t [[overrides]] 2: sets nothing"),
    ([{"epochs": "two"}], "t [[overrides]] 1: epochs expected a whole number (got 'two')"),
    ({"epochs": 1}, "t: overrides must be tables, each written [[overrides]]"),
])
def test_bad_overrides_name_the_table_and_key(overrides, message):
    with pytest.raises(ConfigError) as error:
        matrix_from({"overrides": overrides}, {}, "t")
    assert str(error.value).startswith(message)


def test_variants_add_rows_beside_their_baseline_in_every_round():
    matrix = matrix_from({
        "matrix": {"backends": ["torch"], "implementations": ["keras", "native"], "rounds": 2},
        "variants": [{"implementations": ["keras"], "jit_compile": "true"},
                     {"models": ["cnn"], "implementations": ["keras"], "data_format": "channels_first"},
                     {"input_pipeline": "device"}],
    }, {}, "t")
    planned = [(c.repeat, c.config.model, c.config.implementation, c.config.jit_compile, c.config.data_format,
                c.config.input_pipeline) for c in cells(matrix)]
    first_round = [cell[1:] for cell in planned if cell[0] == 0]
    assert first_round == [
        ("cnn", "keras", "auto", "channels_last", "numpy"), ("cnn", "keras", "true", "channels_last", "numpy"),
        ("cnn", "keras", "auto", "channels_first", "numpy"), ("cnn", "keras", "auto", "channels_last", "device"),
        ("cnn", "native", "auto", "channels_last", "numpy"), ("cnn", "native", "auto", "channels_last", "device"),
        ("ffn", "keras", "auto", "channels_last", "numpy"), ("ffn", "keras", "true", "channels_last", "numpy"),
        ("ffn", "keras", "auto", "channels_last", "device"),
        ("ffn", "native", "auto", "channels_last", "numpy"), ("ffn", "native", "auto", "channels_last", "device")]
    second_round = [cell[1:] for cell in planned if cell[0] == 1]
    assert sorted(second_round) == sorted(first_round)  # the same rows in every round
    # ... each row beside its variants, their order turned by one a round: none always runs first
    assert second_round[:4] == first_round[1:4] + first_round[:1]
    assert second_round[4:6] == [first_round[5], first_round[4]]
    assert len({c.key for c in cells(matrix)}) == len(planned)


@pytest.mark.parametrize("variants, message", [
    ([{"jit_compile": "auto"}],
     "t: a [[variants]] table changes nothing for cell tensorflow cpu cnn jit_compile=auto round 1"),
    ([{"models": ["mlp"], "epochs": 1}], "t [[variants]] 1: models has 'mlp'; allowed: cnn, ffn"),
    ([{"backends": ["torch"], "steps_per_execution": 4}], "t: steps_per_execution must be 1 under the torch backend"),
])
def test_bad_variants_are_refused_in_one_line(variants, message):
    with pytest.raises(ConfigError) as error:
        matrix_from({"variants": variants}, {}, "t")
    assert str(error.value).startswith(message)


def test_compare_flags_for_profiling_threads_and_the_peak_reach_every_cell():
    matrix = load_matrix(CONFIGS / "tuned.toml", {"profile": True, "cpu_threads": 1, "peak_matmul_size": 0})
    assert matrix.peak_matmul_size == 0
    assert all(c.config.profile and c.config.cpu_threads == 1 for c in cells(matrix))
    assert load_matrix(CONFIGS / "tuned.toml", {"profile": None}).peak_matmul_size == 4096


@pytest.mark.parametrize("key, value, repeated", [
    ("backends", "jax,jax", "'jax'"), ("devices", "cpu,gpu,cpu", "'cpu'"), ("models", "cnn,ffn,cnn", "'cnn'"),
    ("implementations", "keras,native,keras", "'keras'"), ("batch_sizes", "64,128,64", "64")])
def test_a_value_listed_twice_on_an_axis_is_refused_naming_it(key, value, repeated):
    """`--backends jax,jax` is a typo, not a wish for one jax row: refused, never silently run once."""
    with pytest.raises(ConfigError) as error:
        load_matrix(None, {key: value})
    assert str(error.value) == f"command line: {key} lists {repeated} more than once; list each value once"


def test_compare_refuses_a_repeated_backend_in_one_line_with_exit_2(tmp_path):
    from click.testing import CliRunner

    from kerasmnist import cli

    result = CliRunner().invoke(cli.cli, ["compare", "--backends", "jax,jax", "--out", str(tmp_path / "out")])
    assert result.exit_code == 2
    assert result.stderr.splitlines() == [
        "kerasmnist: error: command line: backends lists 'jax' more than once; list each value once"]
    assert not (tmp_path / "out").exists()


def test_a_variants_cells_progress_line_names_its_settings():
    """`[[variants]]` and a batch sweep run several cells of one backend, device and model in a round: each
    progress line names what its cell runs with, so no two lines of a round read the same."""
    from kerasmnist.launch import rounds

    planned = cells(matrix_from({
        "matrix": {"backends": ["torch"], "models": ["ffn"], "implementations": ["keras", "native"], "rounds": 1},
        "variants": [{"implementations": ["keras"], "jit_compile": "true"}, {"input_pipeline": "device"}]}, {}, "t"))
    said = []
    progress = rounds.Progress(planned, said.append)
    for cell in planned:
        progress.start(cell)
    assert said == ["[1/5] torch cpu ffn round 1", "[2/5] torch cpu ffn jit_compile=true round 1",
                    "[3/5] torch cpu ffn input_pipeline=device round 1", "[4/5] torch cpu ffn native round 1",
                    "[5/5] torch cpu ffn native input_pipeline=device round 1"]
    swept = cells(matrix_from({"matrix": {"backends": ["jax"], "models": ["cnn"], "batch_sizes": [64, 128],
                                          "rounds": 1}}, {}, "t"))
    assert [cell.label for cell in swept] == ["jax cpu cnn batch_size=64 round 1", "jax cpu cnn batch_size=128 round 1"]
