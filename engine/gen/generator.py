"""Bulk teacher-data generation for prompt distillation, streamed to resumable JSONL.

The teacher sees the system prompt plus a question; each output line holds only the question and the teacher's
answer, so a student can learn to answer without the prompt. Questions stream from disk, `max_concurrent` workers
keep as many requests in flight, and every result is appended and flushed the moment it arrives. A rerun
skips what the output already holds, after cutting off a line torn by a kill.
"""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import itertools
import json
import re
import tempfile
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from engine.errors import BackendError, ConfigError
from engine.events import RequestFinished
from engine.gen.shards import Shard
from engine.jsonl import JsonlAppender, repair_and_load
from engine.request_layer import RequestLayer, RequestTag
from engine.sampler import Message, Sampler, SampleRequest
from engine.settings import MAX_SEED, BackendSettings, backend_settings, check_answer_fits

GenMode = Literal["parallel", "sequential"]
RENDER_BATCH = 32  # prompts rendered in one hand-off to the renderer's thread


@dataclass(frozen=True)
class GenSettings:
    questions: Path
    out: Path
    system_prompt: str | None = None
    num_samples: int = 1
    max_tokens: int = 256
    temperature: float = 0.7
    parse_regex: str | None = None
    mode: GenMode = "parallel"
    limit: int | None = None  # the first N questions of the file, before sharding
    seed: int = 0
    shard: Shard | None = None

    def takes(self, index: int, question: Question) -> bool:
        """Whether this run takes the file's question number `index`: among the first `limit`, and in its shard."""
        within = self.limit is None or index < self.limit
        return within and (self.shard is None or self.shard.holds(question.id))

    @property
    def errors_path(self) -> Path:
        return self.out.with_name(self.out.name.removesuffix(".jsonl") + ".errors.jsonl")

    def validate(self) -> GenSettings:
        if not isinstance(self.num_samples, int) or self.num_samples < 1:
            raise ConfigError(f"num-samples must be an integer >= 1, got {self.num_samples!r}")
        if not isinstance(self.max_tokens, int) or self.max_tokens < 1:
            raise ConfigError(f"max-tokens must be an integer >= 1, got {self.max_tokens!r}")
        if not self.temperature >= 0:
            raise ConfigError(f"temperature must be >= 0, got {self.temperature!r}")
        if not isinstance(self.seed, int) or not 0 <= self.seed <= MAX_SEED:
            raise ConfigError(f"seed must be an integer from 0 to 2**63-1, got {self.seed!r}")
        if self.limit is not None and self.limit < 1:
            raise ConfigError(f"limit must be an integer >= 1, got {self.limit!r}")
        if self.mode not in ("parallel", "sequential"):
            raise ConfigError(f"mode must be parallel or sequential, got {self.mode!r}")
        if self.parse_regex is not None:
            try:
                pattern = re.compile(self.parse_regex)
            except re.error as exc:
                raise ConfigError(f"invalid --parse-regex {self.parse_regex!r}: {exc}") from None
            if pattern.groups < 1:
                raise ConfigError(f"--parse-regex {self.parse_regex!r} needs a group, e.g. 'Final Answer: (\\w+)'")
        return self


# The search settings gen reads, at gen's own defaults (the teacher's temperature, not the power proposal).
GEN_SEARCH_DEFAULTS = {name: GenSettings.__dataclass_fields__[name].default
                       for name in ("max_tokens", "temperature", "seed", "mode")}


@dataclass(frozen=True)
class Question:
    id: str
    text: str
    line: int = 0  # where it stands in its file, for messages


def question_id(text: str) -> str:
    """A stable id for a question given without one: the same text always gets the same id."""
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def read_questions(path: Path) -> Iterator[Question]:
    """Questions from a .txt file (one per line) or a .jsonl file ({"question"|"prompt", "id"?}), streamed."""
    is_jsonl = path.suffix == ".jsonl"
    with path.open(encoding="utf-8") as lines:
        for number, line in enumerate(lines, 1):
            if not line.strip():
                continue
            if not is_jsonl:
                text = line.rstrip("\n")
                yield Question(question_id(text), text, number)
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError as exc:
                raise ConfigError(f"{path}:{number}: not JSON ({exc.msg})") from None
            text = record.get("question", record.get("prompt")) if isinstance(record, dict) else None
            if not isinstance(text, str) or not text.strip():
                raise ConfigError(f"{path}:{number}: needs a non-empty \"question\" or \"prompt\" string")
            given = record.get("id")
            yield Question(str(given) if given is not None else question_id(text), text, number)


def check_questions(settings: GenSettings) -> int:
    """Validate the whole file in one streaming pass before any request; return how many questions this run
    takes (its limit and shard applied, duplicates not yet removed)."""
    path = settings.questions
    if not path.exists():
        raise ConfigError(f"questions file not found: {path}")
    if not path.is_file():
        raise ConfigError(f"questions file {path} is not a regular file")
    try:
        count = taken = 0
        seen: dict[str, tuple[int, str]] = {}  # id -> (line, digest of its text)
        for index, question in enumerate(read_questions(path)):
            count += 1
            taken += settings.takes(index, question)
            digest = hashlib.sha256(question.text.encode()).hexdigest()[:16]
            first = seen.setdefault(question.id, (question.line, digest))
            if first[1] != digest:  # the same question twice is a duplicate, skipped; two questions are a mistake
                raise ConfigError(f"{path}:{first[0]} and {path}:{question.line} share the id {question.id!r} but "
                                  f"ask different questions: an id names one question; give one of them another id")
    except UnicodeDecodeError:
        raise ConfigError(f"questions file {path} is not UTF-8 text") from None
    except OSError as exc:
        raise ConfigError(f"cannot read questions file {path}: {exc.strerror}") from None
    if count == 0:
        raise ConfigError(f"questions file {path} has no questions")
    return taken


@dataclass(frozen=True)
class Prepared:
    """A question ready to send: the samples it lacks and its request, the prompt rendered."""

    question: Question
    samples: list[int]
    request: SampleRequest


@dataclass
class GenProgress:
    """Counters a progress display reads; updated as results land."""

    total: int  # samples to produce in this run
    skipped: int = 0  # samples already in the output from earlier runs
    done: int = 0
    failed: int = 0
    duplicates: int = 0  # questions whose id repeats an earlier one in the file
    started: float = field(default_factory=time.perf_counter)
    finished: float | None = None

    @property
    def elapsed_s(self) -> float:
        return (self.finished or time.perf_counter()) - self.started

    @property
    def examples_per_s(self) -> float:
        return self.done / self.elapsed_s if self.elapsed_s else 0.0


class Generator:
    def __init__(self, settings: GenSettings, backend: BackendSettings, sampler: Sampler, layer: RequestLayer,
                 on_progress: Callable[[GenProgress], None] = lambda progress: None):
        self.settings = settings
        self.backend = backend
        self.sampler = sampler
        self.layer = layer
        self.on_progress = on_progress
        self.pattern = re.compile(settings.parse_regex) if settings.parse_regex else None
        self.system = (Message("system", settings.system_prompt),) if settings.system_prompt else ()
        self._renderer: ThreadPoolExecutor | None = None  # renders prompts while `run` runs
        self.latencies: dict[str, float] = {}  # per question: its request's own time, not its wait for a slot

    def _observe(self, event) -> None:
        """A request's events, its latency kept for its output line, on to the layer's own sink."""
        if isinstance(event, RequestFinished):
            self.latencies[event.run_id] = max(event.latency_s, self.latencies.get(event.run_id, 0.0))
        self.layer.emit(event)

    async def run(self, questions: int) -> GenProgress:
        """Every missing sample of the questions this run takes (`questions` of them, from check_questions)."""
        settings = self.settings
        done = repair_and_load(settings.out, sample_key)
        settings.errors_path.unlink(missing_ok=True)  # failures are retried now, and recorded again if they fail
        progress = GenProgress(total=questions * settings.num_samples)
        output, errors = JsonlAppender(settings.out), JsonlAppender(settings.errors_path)
        # One worker a slot of the request layer's cap, each sending its next request in the same step that
        # writes its last answer, from questions rendered ahead. With a task a question woken by a freed slot, a
        # burst of answers was all written before any refill left, so requests went out in bursts for the
        # whole run and every round paid for its burst (benchmarks.client_ceiling --cap50, 300 questions at cap 50
        # against a 0.5 s server: 97.0 -> 98.3 examples/s; K = 100 at 0.3 s: 0.969 -> 0.978 of the ideal).
        workers = 1 if settings.mode == "sequential" else max(1, min(self.layer.max_concurrent, questions))
        ready: asyncio.Queue[Prepared | None] = asyncio.Queue(workers)
        self._renderer = ThreadPoolExecutor(1, thread_name_prefix="beamtui-prompts")
        tasks = [asyncio.ensure_future(self._prepare(ready, workers, done, progress))]
        tasks += [asyncio.ensure_future(self._work(ready, output, errors, progress)) for _ in range(workers)]
        try:
            await asyncio.gather(*tasks)  # the first to raise stops the run
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            self._renderer.shutdown()
            output.close()
            errors.close()
            progress.finished = time.perf_counter()
        return progress

    def _missing(self, done: set[tuple[str, int]], progress: GenProgress) -> Iterator[tuple[Question, list[int]]]:
        """The questions this run takes, each with the samples the output lacks; duplicates and finished
        questions are counted and passed over."""
        settings = self.settings
        seen: set[str] = set()
        for index, question in enumerate(read_questions(settings.questions)):
            if settings.limit is not None and index >= settings.limit:
                break
            if not settings.takes(index, question):
                continue
            if question.id in seen:
                progress.duplicates += 1
                progress.total -= settings.num_samples
                continue
            seen.add(question.id)
            missing = [k for k in range(settings.num_samples) if (question.id, k) not in done]
            progress.skipped += settings.num_samples - len(missing)
            progress.total -= settings.num_samples - len(missing)
            if missing:
                yield question, missing

    async def _prepare(self, ready: asyncio.Queue, workers: int, done: set[tuple[str, int]],
                       progress: GenProgress) -> None:
        """Questions into `ready` with their requests built, then one None a worker. Prompts are rendered on a
        thread of their own (a server's tokenizer answers over HTTP; llama.cpp's tokenises with the GIL
        released), a batch a hand-off while the batch before is handed out. Handed out one a loop iteration, so
        the first requests leave one by one rather than together: sent together, they came back together and
        stayed so, and every round paid for the burst (gen of K = 100 at 0.3 s, medians of 5: 0.963 of the ideal
        against 0.974).
        One prompt a hand-off paced them too but capped gen at the hand-off's rate: 1,650 requests a second
        against an instant server, 3 in flight (benchmarks.client_ceiling; 2,900 so)."""
        loop = asyncio.get_running_loop()
        todo = self._missing(done, progress)
        rendering = loop.run_in_executor(self._renderer, self._requests, list(itertools.islice(todo, 1)))
        while batch := await rendering:
            rendering = loop.run_in_executor(self._renderer, self._requests,
                                             list(itertools.islice(todo, RENDER_BATCH)))
            for prepared in batch:
                await ready.put(prepared)
                await asyncio.sleep(0)
        for _ in range(workers):
            await ready.put(None)

    def _requests(self, batch: list[tuple[Question, list[int]]]) -> list[Prepared]:
        settings = self.settings
        prepared = []
        for question, samples in batch:
            messages = self.system + (Message("user", question.text),)
            prompt = tuple(self.sampler.render_chat(messages))
            request = SampleRequest(
                prompt, n=len(samples), max_tokens=settings.max_tokens, temperature=settings.temperature,
                seed=_seed(settings.seed, question.id), messages=messages, prompt_len=len(prompt),
            )
            prepared.append(Prepared(question, samples, request))
        return prepared

    async def _work(self, ready: asyncio.Queue, output: JsonlAppender, errors: JsonlAppender,
                    progress: GenProgress) -> None:
        while (prepared := await ready.get()) is not None:
            await self._answer(prepared, output, errors, progress)

    async def _answer(self, prepared: Prepared, output: JsonlAppender, errors: JsonlAppender,
                      progress: GenProgress) -> None:
        settings = self.settings
        question, samples, request = prepared.question, prepared.samples, prepared.request
        try:
            continuations = await self.layer.sample(request, RequestTag(run_id=question.id, emit=self._observe))
        except BackendError as exc:
            self.latencies.pop(question.id, None)
            for sample in samples:
                errors.write({"id": question.id, "sample": sample, "question": question.text, "error": str(exc)})
            progress.failed += len(samples)
            self.on_progress(progress)
            return
        latency = self.latencies.pop(question.id, 0.0)
        for sample, continuation in zip(samples, continuations, strict=False):  # fewer if parts failed
            answer = continuation.text.strip()
            meta = {
                "model": self.sampler.model_name, "backend": self.sampler.name,
                "temperature": settings.temperature, "max_tokens": settings.max_tokens,
                "latency_s": round(latency, 4), "prompt_tokens": len(request.prompt_ids),
                "completion_tokens": len(continuation.token_ids), "finish_reason": continuation.finish_reason,
            }
            if self.pattern is not None:
                match = self.pattern.search(continuation.text)
                if match is None:
                    errors.write({"id": question.id, "sample": sample, "question": question.text,
                                  "error": f"no match for --parse-regex {self.pattern.pattern!r}",
                                  "raw": continuation.text})
                    progress.failed += 1
                    continue
                meta["raw"] = continuation.text
                answer = match.group(1)
            output.write({"id": question.id, "sample": sample,
                          "messages": [{"role": "user", "content": question.text},
                                       {"role": "assistant", "content": answer}],
                          "meta": meta})
            progress.done += 1
        lost = samples[len(continuations):]  # the backend answered fewer than asked (some parts failed)
        for sample in lost:
            errors.write({"id": question.id, "sample": sample, "question": question.text,
                          "error": "the backend returned fewer samples than requested"})
        progress.failed += len(lost)
        self.on_progress(progress)


def sample_key(record: dict) -> tuple[str, int]:
    return str(record["id"]), int(record.get("sample", 0))


def _seed(seed: int, qid: str) -> int:
    return int(hashlib.sha256(f"{seed}:{qid}".encode()).hexdigest()[:8], 16)


def gen_settings(values: dict, *, questions: str | Path, out: str | Path, system_prompt_file: str | None = None,
                 num_samples: int = 1, parse_regex: str | None = None, limit: int | None = None,
                 shard: str | None = None) -> GenSettings:
    """A gen from settings values (flags or a config file, by setting name) at gen's defaults."""
    values = GEN_SEARCH_DEFAULTS | values
    parsed = Shard.parse(shard) if shard is not None else None
    system = values.get("system_prompt")
    if system_prompt_file and system is not None:
        raise ConfigError("give --system-prompt or --system-prompt-file, not both")
    if system_prompt_file:
        try:
            system = Path(system_prompt_file).read_text(encoding="utf-8")
        except OSError as exc:
            raise ConfigError(f"cannot read --system-prompt-file {system_prompt_file}: {exc.strerror}") from None
    check_answer_fits(values["max_tokens"], backend_settings(values))
    return GenSettings(
        questions=Path(questions), out=parsed.output(Path(out)) if parsed else Path(out), system_prompt=system,
        num_samples=num_samples, max_tokens=values["max_tokens"], temperature=values["temperature"],
        parse_regex=parse_regex, mode=values["mode"], limit=limit, seed=values["seed"], shard=parsed,
    ).validate()


async def compare_modes(settings: GenSettings, backend: BackendSettings, sampler: Sampler, count: int,
                        on_mode: Callable[[str, GenProgress | None], None] = lambda mode, progress: None,
                        ) -> dict[str, float]:
    """The first `count` questions one at a time, then `max_concurrent` at once, into scratch files: each mode's
    wall seconds. `on_mode` hears of each mode as it starts (progress None) and as it ends."""
    times = {}
    with tempfile.TemporaryDirectory() as scratch:
        for mode in ("sequential", "parallel"):
            run = dataclasses.replace(settings, mode=mode, limit=count, out=Path(scratch) / f"{mode}.jsonl")
            on_mode(mode, None)
            progress = await Generator(run, backend, sampler, RequestLayer.for_backend(sampler, backend, seed=0)).run(
                count)
            times[mode] = progress.elapsed_s
            on_mode(mode, progress)
    return times
