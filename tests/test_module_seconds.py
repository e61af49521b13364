"""scripts/module_seconds.py and the module order it gives the test run (conftest)."""

from conftest import REPO, load_script, module_seconds_table

REPORT = """\
============================= slowest durations ==============================
53.19s call     tests/test_ada.py::test_fixed_p_zero[x-1]
2.50s setup    tests/test_ada.py::test_fixed_p_zero[x-1]
0.01s teardown tests/test_ada.py::test_fixed_p_zero[x-1]
51.18s setup    tests/test_multihost.py::test_two_processes
7.00s call     tests/test_multihost.py::test_two_processes
60.00s call     tests/test_cli.py::test_one
(120 durations < 0.005s hidden.  Use -vv to show these durations.)
1 failed, 887 passed, 2 warnings in 1442.28s (0:24:02)
"""


def _load():
  return load_script('scripts/module_seconds.py')


def test_sums_setup_call_and_teardown_per_module_longest_first(tmp_path):
  script = _load()
  rows = script.module_seconds(REPORT.splitlines())
  # by hand: ada 53.19 + 2.50 + 0.01; multihost 51.18 + 7.00; cli 60.00
  assert [m for _, m in rows] == [
    'tests/test_cli.py',
    'tests/test_multihost.py',
    'tests/test_ada.py',
  ]
  assert [round(s, 2) for s, _ in rows] == [60.0, 58.18, 55.7]
  log, out = tmp_path / 'durations.log', tmp_path / 'seconds.txt'
  log.write_text(REPORT)
  assert script.main([str(log), '--out', str(out)]) == 0
  body = [line for line in out.read_text().splitlines() if not line.startswith('#')]
  assert body == [
    '60.0 tests/test_cli.py',
    '58.2 tests/test_multihost.py',
    '55.7 tests/test_ada.py',
  ]


def test_a_log_without_durations_is_a_one_line_error(tmp_path, capsys):
  script = _load()
  log = tmp_path / 'plain.log'
  log.write_text('1 passed in 3.0s\n')
  assert script.main([str(log)]) == 2
  assert script.main([str(tmp_path / 'missing.log')]) == 2
  err = capsys.readouterr().err.strip().splitlines()
  assert len(err) == 2 and 'no duration lines' in err[0] and 'cannot read' in err[1]


def test_the_committed_table_names_only_existing_modules_longest_first():
  seconds = module_seconds_table()
  assert len(seconds) > 50
  assert all((REPO / module).is_file() for module in seconds), 'stale module in module_seconds.txt'
  values = list(seconds.values())
  assert values == sorted(values, reverse=True)
