"""--match-params: every cell's model (cell + readout) lands within 2% of the parameter budget."""
import pytest

from bench import create_cell, list_cells
from bench.errors import UserError
from bench.registry import parse_spec
from bench.sizing import model_parameters, size_for
from bench.task import parse_task

SPEC = parse_task("adding").build().spec
SMALL = {"nru": {"memory_size": 64, "k": 4}}     # NRU's published memory alone exceeds 20K


@pytest.mark.parametrize("name", list_cells())
def test_every_cell_matches_the_budget_within_2_percent(name):
    spec = parse_spec(name)
    hp = spec.resolve({name: SMALL.get(name, {})}, context={"seq_len": SPEC.seq_len})
    hidden = size_for(spec, hp, SPEC, 20000)
    n = model_parameters(create_cell(spec, SPEC.input_size, hidden, **hp), SPEC)
    assert abs(n - 20000) <= 0.02 * 20000, (hidden, n)


def test_unreachable_budget_is_a_clear_error():
    spec = parse_spec("nru")
    hp = spec.resolve(context={"seq_len": 50})
    with pytest.raises(UserError, match="cannot match 1000 parameters within 2%"):
        size_for(spec, hp, SPEC, 1000)
