"""Continuous batching on one thread that owns the llama.cpp context.

Every step decodes one token for each live continuation, plus prompt chunks of newly admitted requests, in a
single `llama_decode`; each continuation's token is then drawn from its logits row with exact log p and log q
(`sampling`). Finished sequences stay in the KV cache, so the next block of a beam only decodes the tokens its
cached prefix lacks, and requests arriving together with a long common prompt prefill it once.
"""

from __future__ import annotations

import concurrent.futures
import queue
import threading
from pathlib import Path

import numpy as np

from engine.backends.local.gguf import GGUFModel
from engine.backends.local.jobs import Job, Stream
from engine.backends.local.kv_sequences import SequencePool, common_prefix, gap_closing_moves
from engine.backends.local.layout import REPACKED_ONE_TOKEN
from engine.backends.local.sampling import next_token_entropy, sample_tokens, stream_rng, top_alternatives
from engine.backends.local.token_batch import TokenBatch
from engine.errors import BackendError, ConfigError
from engine.sampler import SampleRequest

_NO_JOB = object()


class _Closing(Exception):
    """The decoder was closed in the middle of a step."""
SHARED_PREFIX_MIN = 32  # tokens; a copy moves a whole KV stream, which shorter shared prefixes do not repay


class BatchDecoder:
    """Loads a model and owns its llama.cpp context on one thread, serving sample requests with continuous batching.

    Loading happens on that thread too: ggml's OpenMP team belongs to the thread that runs it, and a second
    team left behind by a loader thread measured a third off the decoding speed.
    """

    def __init__(self, path: Path, *, layout: str | None, context: int, n_seq_max: int, n_batch: int,
                 threads: int, flash_attn: str = "auto"):
        self.flash_attn = flash_attn
        self.n_batch = n_batch
        self.n_seq_max = n_seq_max
        self.context = context
        self.model: GGUFModel | None = None
        self.ctx = None
        self.ready: concurrent.futures.Future[GGUFModel] = concurrent.futures.Future()
        self.inbox: queue.SimpleQueue[Job | None] = queue.SimpleQueue()
        self.waiting: list[Job] = []  # admitted to the worker, not yet given sequences
        self.prefilling: list[Job] = []
        self.streams: list[Stream] = []
        self.sequences: SequencePool  # made with the context
        self.prefix_tokens_reused = 0
        self.steps = 0  # llama_decode calls made: a waiting request's sign that the decoder is moving
        self.closing = threading.Event()
        self.thread = threading.Thread(
            target=self._serve, args=(path, layout, threads), name="beamtui-llama", daemon=True
        )
        self.thread.start()

    def _open(self, path: Path, layout: str | None, threads: int) -> None:
        self.model = model = GGUFModel(path, layout=layout)
        llama_cpp = model.llama
        params = llama_cpp.llama_context_default_params()
        params.n_ctx = self.context * self.n_seq_max
        params.n_batch = self.n_batch
        params.n_ubatch = self.n_batch
        params.n_seq_max = self.n_seq_max
        # One KV stream per sequence. The unified cache mixes up sequences that share a ubatch of 64+ tokens
        # in this llama.cpp (logits off by more than 1.0), and a prefix copied between streams is cheap here.
        params.kv_unified = False
        params.flash_attn_type = {"auto": llama_cpp.LLAMA_FLASH_ATTN_TYPE_AUTO,
                                  "on": llama_cpp.LLAMA_FLASH_ATTN_TYPE_ENABLED,
                                  "off": llama_cpp.LLAMA_FLASH_ATTN_TYPE_DISABLED}[self.flash_attn]
        params.n_threads = threads
        params.n_threads_batch = threads
        self.ctx = llama_cpp.llama_init_from_model(model.model, params)
        if not self.ctx:
            raise ConfigError(f"cannot create a llama.cpp context of {self.n_seq_max} x {self.context} tokens")
        self.memory = llama_cpp.llama_get_memory(self.ctx)
        self.sequences = SequencePool(llama_cpp, self.memory, self.n_seq_max)
        self.batch = TokenBatch(llama_cpp, self.n_batch)
        self.one_token_per_decode = model.layout == REPACKED_ONE_TOKEN
        self.eog = model.eog  # built at load, not in the first search's first step (~15 ms)
        # Token by token, a long prefill in one step would stall every running stream for seconds.
        self.step_tokens = self.n_seq_max + 16 if self.one_token_per_decode else self.n_batch

    def _serve(self, path: Path, layout: str | None, threads: int) -> None:
        try:
            self._open(path, layout, threads)
            self.ready.set_result(self.model)
        except concurrent.futures.InvalidStateError:  # the caller stopped waiting for the load
            self._free()
            return
        except Exception as exc:  # a bad model file must reach the caller, not kill the thread silently
            self._free()
            if not self.ready.cancelled():
                self.ready.set_exception(exc)
            return
        self._run()

    def submit(self, request: SampleRequest) -> concurrent.futures.Future:
        future: concurrent.futures.Future = concurrent.futures.Future()
        needed = len(request.prompt_ids) + request.max_tokens
        if needed > self.context:
            future.set_exception(BackendError(
                f"prompt + max tokens ({needed}) exceed the local context of {self.context} tokens per sequence",
                transient=False,
            ))
        elif request.n > self.n_seq_max:
            future.set_exception(BackendError(
                f"n={request.n} exceeds the local model's {self.n_seq_max} parallel sequences", transient=False
            ))
        else:
            self.inbox.put(Job(request, future))
        return future

    def close(self) -> None:
        self.closing.set()  # a step decoding token by token stops at its next token
        self.inbox.put(None)
        self.thread.join(timeout=10)
        if not self.thread.is_alive():  # still decoding: leave the context to the process exit
            self._free()

    def _free(self) -> None:
        if self.ctx:
            self.model.llama.llama_free(self.ctx)
            self.ctx = None
        if self.model:
            self.model.close()

    # The worker thread ------------------------------------------------------------------------------------

    def _run(self) -> None:
        while True:
            busy = bool(self.streams or self.prefilling or self.waiting)
            try:
                job = self.inbox.get_nowait() if busy else self.inbox.get()
            except queue.Empty:
                job = _NO_JOB
            if job is None:
                self._fail_all("the local model was shut down")
                return
            if job is not _NO_JOB:
                self.waiting.append(job)
                continue  # drain the inbox first, so a burst of requests shares one batch
            try:
                self._drop_cancelled()
                self._admit()
                if self.streams or self.prefilling:
                    self._step()
            except _Closing:
                self._fail_all("the local model was shut down")
                return
            except Exception as exc:  # a llama.cpp failure must reach the callers, not kill the thread
                self._fail_all(f"local model failed: {exc}")

    def _fail_all(self, reason: str) -> None:
        for job in self.waiting + self.prefilling + list({id(s.job): s.job for s in self.streams}.values()):
            if not job.future.done():
                job.future.set_exception(BackendError(reason, transient=False))
        for stream in self.streams:
            self.sequences.release(stream.seq)
        for job in self.waiting + self.prefilling:
            for seq in job.seqs:
                self.sequences.release(seq)
        self.waiting, self.prefilling, self.streams = [], [], []

    def _drop_cancelled(self) -> None:
        for jobs in (self.waiting, self.prefilling):
            for job in [job for job in jobs if job.future.cancelled()]:
                jobs.remove(job)
                for seq in job.seqs:
                    self.sequences.release(seq)
        for stream in [s for s in self.streams if s.job.future.cancelled()]:
            self.streams.remove(stream)
            self._park(stream)

    def _admit(self) -> None:
        # Every waiting job pins its cached prefix first, so evicting for one never takes another's.
        for job in self.waiting:
            if not job.claimed:
                self._claim_prefix(job)
        while self.waiting:
            job = self.waiting[0]
            missing = job.request.n - len(job.seqs)
            if self.sequences.available() < missing:
                self._unpin_behind(job, missing)
            if self.sequences.available() < missing:
                return  # wait for running sequences to finish
            if self._prefix_on_its_way(job):
                return  # the job ahead is computing this one's prefix: copy it in a step or two
            self.waiting.pop(0)
            job.seqs += self.sequences.take(missing)
            self._copy_live_prefix(job)
            self.prefix_tokens_reused += job.prefill_pos
            self.prefilling.append(job)

    def _unpin_behind(self, head: Job, missing: int) -> None:
        """Give back the cached prefixes that jobs queued behind `head` pinned, last first, until it fits.

        Pins only save prefill. Kept while the head waits, 32 queued one-sequence jobs could hold all 16
        sequences of an idle decoder and leave a job asking for four stalled until requests timed out
        (measured: an eval of 8 problems took 84 s instead of 15)."""
        for job in reversed(self.waiting):
            if self.sequences.available() >= missing:
                return
            if job is head or not job.seqs:
                continue
            self.sequences.park(job.seqs.pop(), job.request.prompt_ids[: job.prefill_pos], evict_first=True)
            job.prefill, job.prefill_pos = list(job.request.prompt_ids), 0

    def _live_prefixes(self):
        """(sequence, tokens in its KV cache) for every sequence a running job is filling."""
        for job in self.prefilling:
            yield job.seqs[0], job.request.prompt_ids[: job.prefill_pos]
        for stream in self.streams:
            yield stream.seq, stream.job.request.prompt_ids + tuple(stream.tokens[:-1])

    def _prefix_on_its_way(self, job: Job) -> bool:
        """Whether a job still prefilling shares enough of this job's prompt to be worth waiting for.

        gen sends every question under one long system prompt at once; without waiting, each would
        prefill that prompt itself.
        """
        prompt = job.request.prompt_ids
        for leader in self.prefilling:
            shared = min(common_prefix(leader.request.prompt_ids, prompt), len(prompt) - 1)
            if shared >= job.prefill_pos + SHARED_PREFIX_MIN and leader.prefill_pos < shared:
                return True
        return False

    def _copy_live_prefix(self, job: Job) -> None:
        """Copy the longest prefix of the job's prompt that a running sequence holds, if it beats what it has."""
        prompt = job.request.prompt_ids
        source, best = -1, job.prefill_pos + SHARED_PREFIX_MIN - 1
        for seq, tokens in self._live_prefixes():
            shared = min(common_prefix(tokens, prompt), len(prompt) - 1)
            if shared > best:
                source, best = seq, shared
        if source < 0:
            return
        target = job.seqs[0]
        self.sequences.copy(source, target)
        self.model.llama.llama_memory_seq_rm(self.memory, target, best, -1)  # the copy is whole: trim its tail
        job.prefill = list(prompt[best:])
        job.prefill_pos = best

    def _claim_prefix(self, job: Job) -> None:
        """Give the job the idle sequence holding the longest prefix of its prompt."""
        job.claimed = True
        seq, length = self.sequences.claim(job.request.prompt_ids)
        job.seqs = [seq] if seq >= 0 else []
        job.prefill = list(job.request.prompt_ids[length:])
        job.prefill_pos = length

    def _park(self, stream: Stream) -> None:
        """Keep a finished sequence's KV cache for the next block to extend."""
        self.sequences.park(stream.seq, stream.job.request.prompt_ids + tuple(stream.tokens[:-1]))

    def _step(self) -> None:
        self.steps += 1
        tokens: list[int] = []
        positions: list[int] = []
        seqs: list[int] = []
        wants_logits: list[bool] = []
        owners: list[object] = []  # per output row: the stream it feeds, or a job whose prompt ends there

        def add(token: int, pos: int, seq: int, logits: bool) -> None:
            tokens.append(token)
            positions.append(pos)
            seqs.append(seq)
            wants_logits.append(logits)

        for stream in self.streams:
            add(stream.tokens[-1], stream.pos, stream.seq, True)
            owners.append(stream)
        room = self.step_tokens - len(tokens)
        for job in self.prefilling:
            if room <= 0:
                break
            if len(job.prefill) == 1:
                # The last prompt token always gets a step of its own, as it does when the prefix is cached:
                # llama.cpp's logits for a token differ by ~1e-2 between a long prefill and a single decode.
                add(job.prefill.pop(), job.prefill_pos, job.seqs[0], True)
                owners.append(job)
                room -= 1
                continue
            chunk = job.prefill[: min(room, len(job.prefill) - 1)]
            del job.prefill[: len(chunk)]
            for offset, token in enumerate(chunk):
                add(token, job.prefill_pos + offset, job.seqs[0], False)
            job.prefill_pos += len(chunk)
            room -= len(chunk)
        if self.one_token_per_decode:
            logits = self._decode_each(tokens, positions, seqs, wants_logits)
        else:
            self._decode(self.batch.fill(tokens, positions, seqs, wants_logits))
            logits = np.ctypeslib.as_array(
                self.model.llama.llama_get_logits(self.ctx), shape=(len(owners), self.model.n_vocab)
            )
        rows: list[tuple[Stream, int]] = []
        for row, owner in enumerate(owners):
            if isinstance(owner, Stream):
                owner.pos += 1
                rows.append((owner, row))
            else:
                rows.extend((stream, row) for stream in self._start_streams(owner))
        self._sample(logits, rows)
        self._finish_done()
        self._close_gaps()

    def _decode(self, batch) -> None:
        status = self.model.llama.llama_decode(self.ctx, batch)
        if status == 1 and self.sequences.evict_all():  # KV cache full: drop idle prefixes and try once more
            status = self.model.llama.llama_decode(self.ctx, batch)
        if status != 0:
            raise RuntimeError(
                "the KV cache is full; lower beam width, n per beam or max tokens" if status == 1
                else f"llama_decode returned {status}"
            )

    def _decode_each(self, tokens: list[int], positions: list[int], seqs: list[int], wants_logits: list[bool]):
        """Decode token by token, for weight layouts whose kernels handle only one token at a time."""
        n_vocab = self.model.n_vocab
        logits = np.empty((sum(wants_logits), n_vocab), dtype=np.float32)
        row = 0
        for token, pos, seq, wanted in zip(tokens, positions, seqs, wants_logits, strict=True):
            if self.closing.is_set():  # a step of 32 one-token decodes took ~0.4 s: quitting waited it out
                raise _Closing
            self._decode(self.batch.fill([token], [pos], [seq], [wanted]))
            if wanted:
                logits[row] = np.ctypeslib.as_array(self.model.llama.llama_get_logits(self.ctx), shape=(n_vocab,))
                row += 1
        return logits

    def _start_streams(self, job: Job) -> list[Stream]:
        self.prefilling.remove(job)
        request = job.request
        for seq in job.seqs[1:]:
            self.sequences.copy(job.seqs[0], seq)
        job.streams = [
            Stream(job, seq, stream_rng(request.seed, index), pos=len(request.prompt_ids))
            for index, seq in enumerate(job.seqs)
        ]
        if request.watch is not None:
            for index, stream in enumerate(job.streams):
                request.watch(index, stream.tokens, stream.logprobs)
        self.streams.extend(job.streams)
        self.streams.sort(key=lambda stream: stream.seq)
        return job.streams

    def _close_gaps(self) -> None:
        """Keep the running streams on one contiguous range of sequences, in ascending order.

        llama.cpp reuses a step's compute graph only for a contiguous range of sequences, and a non-unified cache
        attends over every stream between the lowest and highest in a batch. `benchmarks.sequence_gaps` (raw
        llama.cpp, 2-core EPYC, repacked): 15 streams with a gap where one ended, 117 ms a step against 85 as
        0..14; eight as 0, 2, .., 14 84 ms, as 0..7 50. Moving a stream costs one whole-stream copy, ~5 ms.
        """
        if self.one_token_per_decode or not self.streams:  # one token a decode: no batch to keep together
            return
        if self.streams[-1].seq - self.streams[0].seq == len(self.streams) - 1:  # sorted, so contiguous
            return
        by_seq = {stream.seq: stream for stream in self.streams}
        blocked = {seq for job in self.waiting + self.prefilling for seq in job.seqs}
        moves = gap_closing_moves(by_seq, blocked, self.sequences.cached, self.n_seq_max)
        holes = {target for _, target in moves}
        for source, target in moves:
            self.sequences.vacate(target, keep_free=holes)
            self.sequences.move(source, target)
            by_seq[source].seq = target
        if moves:
            self.streams.sort(key=lambda stream: stream.seq)

    def _sample(self, logits: np.ndarray, rows: list[tuple[Stream, int]]) -> None:
        streams = [stream for stream, _ in rows]
        order = [row for _, row in rows]
        tokens, logprobs, proposal_logprobs = sample_tokens(
            logits if order == list(range(len(logits))) else logits[order],
            np.array([stream.job.request.temperature for stream in streams]),
            np.array([stream.rng.random() for stream in streams]),
        )
        for (stream, row), token, logprob, proposal_logprob in zip(
                rows, tokens.tolist(), logprobs.tolist(), proposal_logprobs.tolist(), strict=True):
            request = stream.job.request
            if request.top_logprobs:
                stream.alternatives.append(top_alternatives(logits[row], request.top_logprobs))
            if request.entropies:
                stream.entropies.append(next_token_entropy(logits[row]))
            stream.logprobs.append(logprob)
            stream.proposal_logprobs.append(proposal_logprob)
            stream.tokens.append(token)  # last: a watcher that sees the token sees its logprob too
            if self.eog[token]:
                stream.finish = "stop"
            elif request.stop and stream.hits_stop(self.model.decode):
                stream.finish = "stop"
            elif len(stream.tokens) >= request.max_tokens:
                stream.finish = "length"

    def _finish_done(self) -> None:
        done = [stream for stream in self.streams if stream.finish]
        if not done:
            return
        for stream in done:
            self.streams.remove(stream)
            self._park(stream)
        for job in {id(stream.job): stream.job for stream in done}.values():
            if all(stream.finish for stream in job.streams) and not job.future.done():
                job.future.set_result([stream.continuation(self.model.decode) for stream in job.streams])
