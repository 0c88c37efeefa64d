"""Benchmark tasks, rule by rule: the table, the choice of tasks, reading and checking items, the shuffle, the cap,
the few-shot draws, the prompts, the token spans (common prefix / suffix, the language-modelling prefix, the left
crop) and the packed row."""

from __future__ import annotations

import random
from pathlib import Path

import pytest

from lmtrain.data.datasets import DataPaths
from lmtrain.errors import ConfigError, DataError
from lmtrain.tasks.encode import Encoded, common_prefix, common_suffix, encode_item, pack, pack_row
from lmtrain.tasks.items import Prompts, check_enough, fewshot_indices, read_items, render, select_items
from lmtrain.tasks.locate import TaskPaths, locate_task
from lmtrain.tasks.spec import TaskSpec, core_label, core_table, select_tasks
from task_helpers import write_jsonl, write_tasks


def spec(kind: str = "multiple_choice", shots: int = 0, delimiter: str = " ", **keys) -> TaskSpec:
    return TaskSpec(name="t", file="t.jsonl", type=kind, shots=shots, delimiter=delimiter, baseline=25.0, **keys)


def test_the_core_table_holds_the_22_tasks_with_dclms_settings() -> None:
    table = core_table()
    assert table.core_tasks == 22 and len(table.tasks) == 22
    t = table.tasks
    assert (t["hellaswag"].shots, t["hellaswag"].type, t["hellaswag"].baseline) == (10, "multiple_choice", 25.0)
    assert t["hellaswag_zeroshot"].file == t["hellaswag"].file and t["hellaswag_zeroshot"].shots == 0
    assert (t["arc_easy"].delimiter, t["piqa"].delimiter, t["boolq"].baseline) == ("\nAnswer: ", "\nAnswer: ", 62.0)
    assert (t["winogrande"].type, t["lambada_openai"].type, t["agi_eval_lsat_ar"].shots) == (
        "schema",
        "language_modeling",
        3,
    )
    assert t["commonsense_qa"].baseline == 40.3 and t["jeopardy"].delimiter == "\nAnswer: "
    pinned = [name for name, task in t.items() if task.sha256]
    assert len(pinned) == 20 and "squad" not in pinned and "coqa" not in pinned
    downloadable = [name for name, task in t.items() if task.source]
    assert "hellaswag" not in downloadable and len(downloadable) == 18  # no byte-identical public HellaSwag file
    assert all(
        task.source.startswith("https://raw.githubusercontent.com/mosaicml/llm-foundry/")
        for task in t.values()
        if task.source
    )


def test_the_centred_score_puts_chance_at_zero_and_perfect_at_one() -> None:
    task = spec()
    assert task.centred(0.25) == 0.0 and task.centred(1.0) == 1.0
    assert task.centred(0.5) == pytest.approx(1 / 3)
    assert core_label(20, core_table()) == "CORE (20 of 22 tasks)" and core_label(22, core_table()) == "CORE"


def test_tasks_are_chosen_by_core_by_name_and_by_toml(tmp_path: Path) -> None:
    tasks, asked_core = select_tasks("core")
    assert asked_core and len(tasks) == 22
    tasks, asked_core = select_tasks("hellaswag, arc_easy,hellaswag")
    assert [t.name for t in tasks] == ["hellaswag", "arc_easy"] and not asked_core
    toml = write_tasks(tmp_path)
    tasks, _ = select_tasks(f"copa,{toml}")
    assert [t.name for t in tasks] == ["copa", "repeat_multiple_choice", "repeat_schema", "repeat_language_modeling"]
    assert tasks[1].root == tmp_path and not tasks[1].core and tasks[0].core


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("[[task]]\nname = 'x'\nfile = 'x.jsonl'\ntype = 'schema'\nshots = 0\ndelimiter = ' '\n", "has no baseline"),
        ("[[task]]\nname='x'\nfile='x'\ntype='mc'\nshots=0\ndelimiter=' '\nbaseline=1\n", "type 'mc' must be one of"),
        ("[[task]]\nname='x'\nfile='x'\ntype='schema'\nshots=-1\ndelimiter=' '\nbaseline=1\n", "shots=-1"),
        ("[[task]]\nname='x'\nfile='x'\ntype='schema'\nshots=0\ndelimiter=' '\nbaseline=100\n", "baseline=100"),
        (
            "[[task]]\nname='x'\nfile='x'\ntype='schema'\nshots=0\ndelimiter=' '\nbaseline=1\nshot=3\n",
            "unknown key shot",
        ),
        ("title = 'no tasks'\n", "has no [[task]] entries"),
        ("[[task]\n", "is not valid TOML"),
    ],
)
def test_a_bad_tasks_toml_is_one_clear_error(tmp_path: Path, text: str, message: str) -> None:
    toml = tmp_path / "mine.toml"
    toml.write_text(text)
    with pytest.raises(ConfigError, match="mine.toml") as err:
        select_tasks(str(toml))
    assert message in str(err.value)


def test_an_unknown_task_lists_the_known_ones() -> None:
    with pytest.raises(
        ConfigError, match=r"unknown task 'hellaswagg'; known: core, chatcore, .*hellaswag_zeroshot, .*gsm8k"
    ):
        select_tasks("hellaswagg")
    with pytest.raises(ConfigError, match="no such file"):
        select_tasks("missing.toml")


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ('{"query": "q", "choices": ["a", "b"], "gold": 0', r"t.jsonl:2 \(task t\) is not JSON"),
        ('{"context": "c", "continuation": "x"}', r"has no query, choices, gold \(it has context, continuation\)"),
        ('{"query": "q", "choices": ["a", "b"], "gold": 2}', r"gold=2 is out of range for 2 options"),
        ('{"query": "q", "choices": ["a", "b"], "gold": "0"}', "has gold of the wrong type"),
        ('{"query": "q", "choices": ["a"], "gold": 0}', "must be 2 or more strings"),
        ("[1, 2]", "is a JSON list, not an object"),
    ],
)
def test_a_bad_record_names_its_file_line_and_what_is_wrong(tmp_path: Path, line: str, message: str) -> None:
    path = tmp_path / "t.jsonl"
    path.write_text('{"query": "q", "choices": ["a", "b"], "gold": 1}\n' + line + "\n")
    with pytest.raises(DataError, match=message):
        read_items(spec(), path)


def test_an_empty_task_file_and_an_empty_continuation_are_refused(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="holds no items"):
        read_items(spec(), write_jsonl(tmp_path / "t.jsonl", []))
    path = write_jsonl(tmp_path / "lm.jsonl", [{"context": "a", "continuation": "  "}])
    with pytest.raises(DataError, match="the continuation is empty"):
        read_items(spec("language_modeling"), path)


def test_items_are_shuffled_with_seed_1337_and_capped_after() -> None:
    items = list(range(50))
    expected = list(range(50))
    random.Random(1337).shuffle(expected)
    assert select_items(items, None) == expected
    assert select_items(items, 7) == expected[:7]
    assert select_items(items, 500) == expected  # a cap above the task's size keeps every item
    assert select_items(list(range(10)), 4) == [0, 3, 7, 2]  # the order nanochat and DCLM score
    with pytest.raises(ConfigError, match="--max-per-task 0 must be at least 1"):
        select_items(items, 0)


def test_fewshot_draws_are_those_of_random_1234_plus_index_without_the_item() -> None:
    assert fewshot_indices(0, 20, 3) == [15, 4, 1]
    assert fewshot_indices(7, 20, 3) == [16, 6, 10]
    assert fewshot_indices(19, 20, 5) == [6, 5, 13, 17, 16]
    assert fewshot_indices(3, 20, 0) == []
    for index in range(11):
        drawn = fewshot_indices(index, 11, 10)
        assert sorted(drawn) == [i for i in range(11) if i != index]


def test_a_task_with_fewer_items_than_shots_plus_one_is_a_clear_error() -> None:
    check_enough(spec(shots=10), 11)
    check_enough(spec(shots=0), 1)
    with pytest.raises(ConfigError, match=r"task t has 10 items to score but is 10-shot.*at least 11.*--max-per-task"):
        check_enough(spec(shots=10), 10)


def test_prompts_of_each_shape_are_written_as_the_rules_say() -> None:
    mc = [{"query": f"Q{i}", "choices": [f"a{i}", f"b{i}"], "gold": i % 2} for i in range(3)]
    shots = fewshot_indices(0, 3, 2)
    got = render(spec(shots=2, delimiter="\nAnswer: "), mc, 0)
    head = "".join(f"Q{i}\nAnswer: {mc[i]['choices'][i % 2]}\n\n" for i in shots)
    assert got.texts == [head + "Q0\nAnswer: a0", head + "Q0\nAnswer: b0"] and got.gold == 0
    schema = [{"context_options": [f"c{i}", f"d{i}"], "continuation": f"x{i}", "gold": 1} for i in range(3)]
    got = render(spec("schema", shots=1), schema, 2)
    (k,) = fewshot_indices(2, 3, 1)
    assert got.texts == [f"d{k} x{k}\n\nc2 x2", f"d{k} x{k}\n\nd2 x2"] and got.gold == 1
    lm = [{"context": f" ctx{i}  ", "continuation": f"end{i}"} for i in range(2)]
    got = render(spec("language_modeling", shots=1, delimiter="\nA: "), lm, 0)
    assert got.texts == ["ctx1\nA: end1\n\nctx0\nA:", "ctx1\nA: end1\n\nctx0\nA: end0"] and got.gold is None


def test_a_continuation_merged_with_the_delimiter_is_scored_from_the_first_differing_token(tokenizer) -> None:
    bos = tokenizer.eot_id
    prompts = Prompts(["The pet is cat", "The pet is dog", "The pet is the bird"], 0)
    ids = [tokenizer.encode(t) for t in prompts.texts]
    item = encode_item("multiple_choice", prompts, ids, bos=bos, max_len=64)
    for seq, (start, end), text in zip(item.options, item.spans, prompts.texts):
        assert seq == [bos, *tokenizer.encode(text)]
        assert tokenizer.decode(seq[start:end]) == text.removeprefix("The pet is")  # the space belongs to the answer
    prompts = Prompts(["The pet is the cat", "The pet is the dog"], 1)
    item = encode_item("multiple_choice", prompts, [tokenizer.encode(t) for t in prompts.texts], bos=bos, max_len=64)
    assert [tokenizer.decode(s[a:b]) for s, (a, b) in zip(item.options, item.spans)] == [" cat", " dog"]


def test_schema_options_are_scored_on_their_common_token_suffix(tokenizer) -> None:
    bos = tokenizer.eot_id
    prompts = Prompts(["The trophy did not fit: it is too big.", "The suitcase did not fit: it is too big."], 0)
    ids = [tokenizer.encode(t) for t in prompts.texts]
    item = encode_item("schema", prompts, ids, bos=bos, max_len=64)
    scored = [tokenizer.decode(s[a:b]) for s, (a, b) in zip(item.options, item.spans)]
    assert scored == [" did not fit: it is too big."] * 2
    assert common_suffix([[1, 2, 3], [4, 2, 3]]) == 2 and common_prefix([[1, 2], [1, 2, 3]]) == 2


def test_a_language_modelling_item_scores_what_follows_the_prompt_without_it(tokenizer) -> None:
    bos = tokenizer.eot_id
    prompts = Prompts(["The capital of France is", "The capital of France is Paris"], None)
    item = encode_item("language_modeling", prompts, [tokenizer.encode(t) for t in prompts.texts], bos=bos, max_len=64)
    (seq,), ((start, end),) = item.options, item.spans
    assert tokenizer.decode(seq[start:end]) == " Paris" and not item.not_prefix
    # " ab" is one token where " a" is another: the prompt without is no token prefix; the rest after the shared ones
    prompts = Prompts(["x a", "x ab"], None)
    ids = [tokenizer.encode(t) for t in prompts.texts]
    item = encode_item("language_modeling", prompts, ids, bos=bos, max_len=64)
    (seq,), ((start, end),) = item.options, item.spans
    assert ids[1][: len(ids[0])] != ids[0]
    assert item.not_prefix and seq[:start] == [bos, *ids[0][: common_prefix(ids)]] and end == len(seq)


def test_a_prompt_longer_than_the_context_keeps_its_last_tokens() -> None:
    prompts = Prompts(["", ""], 0)
    options = [[1, 2, 3, 4, 5, 6, 7, 8, 9], [1, 2, 3, 4, 5, 6, 7, 10]]  # after the BOS (0): lengths 10 and 9
    item = encode_item("multiple_choice", prompts, options, bos=0, max_len=6)
    assert item.options == [[4, 5, 6, 7, 8, 9], [3, 4, 5, 6, 7, 10]]
    assert item.spans == [(4, 6), (5, 6)]  # the continuation starts at token 8 of the full sequence in both
    # a continuation longer than the context: the scored span starts at the second token left
    item = encode_item("language_modeling", Prompts(["", ""], None), [[1], [1, 2, 3, 4, 5, 6, 7]], bos=0, max_len=4)
    assert item.options == [[4, 5, 6, 7]] and item.spans == [(1, 4)]


def test_packing_computes_the_shared_prefix_once_and_scores_each_option_as_its_own_sequence() -> None:
    item = Encoded(options=[[0, 5, 6, 7, 8], [0, 5, 6, 9], [0, 5, 1, 2, 3]], spans=[(2, 5), (2, 4), (2, 5)], gold=0)
    unit = pack_row(item, [0, 1, 2])
    assert unit.tokens == [0, 5, 6, 7, 8, 6, 9, 1, 2, 3]  # the prefix all three share, [0, 5], once
    assert unit.positions == [0, 1, 2, 3, 4, 2, 3, 2, 3, 4]
    assert unit.branch == [0, 0, 1, 1, 1, 2, 2, 3, 3, 3]
    for (k, rows, targets), seq, (start, end) in zip(unit.scored, item.options, item.spans):
        assert targets == seq[start:end] and seq == item.options[k]
        assert [unit.positions[r] for r in rows] == list(range(start - 1, end - 1))
        assert [unit.tokens[r] for r in rows] == seq[start - 1 : end - 1]  # each prediction reads its own sequence


def test_options_sharing_a_long_prompt_share_a_row_and_options_sharing_little_get_their_own() -> None:
    prompt = list(range(1, 201))
    shared = Encoded(options=[[0, *prompt, 7], [0, *prompt, 8, 9]], spans=[(201, 202), (201, 203)], gold=0)
    (row,) = pack(shared, d_model=64)
    assert len(row) == 204 and [k for k, _, _ in row.scored] == [0, 1]
    cropped = Encoded(options=[[*prompt, 7], [*prompt[1:], 8, 9]], spans=[(200, 201), (199, 201)], gold=0)
    rows = pack(cropped, d_model=64)  # a crop shifted the prompts: nothing is shared at equal positions
    assert [len(r) for r in rows] == [201, 201] and [[k for k, _, _ in r.scored] for r in rows] == [[0], [1]]
    assert [r.positions for r in rows] == [list(range(201))] * 2


def test_a_pinned_file_that_differs_is_refused_and_a_missing_one_downloaded(tmp_path: Path, monkeypatch) -> None:
    copa = core_table().tasks["copa"]
    (tmp_path / "mine").mkdir()
    paths = TaskPaths(tmp_path / "mine", DataPaths(None, None, tmp_path / "cache", download=False))
    assert locate_task(copa, paths) is None  # absent and downloads off
    (tmp_path / "mine" / "commonsense_reasoning").mkdir(parents=True)
    write_jsonl(tmp_path / "mine" / copa.file, [{"query": "q", "choices": ["a", "b"], "gold": 0}])
    with pytest.raises(DataError, match=r"copa.jsonl \(task copa\) has SHA-256 .* not the pinned"):
        locate_task(copa, paths)
    calls = []

    def fake_download(url, dest, sha256, **_):
        calls.append((url, dest, sha256))
        return dest

    monkeypatch.setattr("lmtrain.tasks.locate.download", fake_download)
    online = TaskPaths(None, DataPaths(None, None, tmp_path / "cache", download=True))
    assert locate_task(copa, online) == tmp_path / "cache" / "core" / copa.file
    assert calls == [(copa.source, tmp_path / "cache" / "core" / copa.file, copa.sha256)]
    assert locate_task(core_table().tasks["hellaswag"], online) is None  # no byte-identical public copy
