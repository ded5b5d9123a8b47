"""A search's result as the OpenAI API answers: `ChatCompletion`, `Completion` and their stream chunks, built from
the openai SDK's own types so that they are exactly what clients parse, with an extra `beamtui` object saying
what the answer is and what it cost."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence

from openai.types import Completion, CompletionChoice, CompletionUsage
from openai.types.chat import ChatCompletion, ChatCompletionChunk, ChatCompletionMessage, ChatCompletionTokenLogprob
from openai.types.chat.chat_completion import Choice, ChoiceLogprobs
from openai.types.chat.chat_completion_chunk import Choice as ChunkChoice
from openai.types.chat.chat_completion_chunk import ChoiceDelta
from openai.types.completion_choice import Logprobs

from engine.proxy.requests import ProxyRequest
from engine.results import SearchResult, answer_is


def answer_text(result: SearchResult, stops: Sequence[str]) -> tuple[str, str]:
    """The answer's text and its finish reason: cut before the first stop string, as the API does."""
    answer = result.answer
    if answer is None:
        return "", "length"
    text = answer.text
    cut = min((text.find(stop) for stop in stops if stop in text), default=-1)
    if cut >= 0:
        return text[:cut], "stop"
    if answer.finished:
        return text, "stop"
    return text, "content_filter" if answer.finish_reason == "content_filter" else "length"


def usage(results: Sequence[SearchResult]) -> CompletionUsage:
    """Every token the searches spent, over all their requests: prompts sent and completions drawn."""
    prompt = sum(r.usage["prompt_tokens"] for r in results)
    completion = sum(r.usage["completion_tokens"] for r in results)
    return CompletionUsage(prompt_tokens=prompt, completion_tokens=completion, total_tokens=prompt + completion)


def about(request: ProxyRequest, results: Sequence[SearchResult]) -> dict:
    """The extra `beamtui` object: what each answer is, and what each search did and cost."""
    return {
        "spec": request.spec,
        "answer_is": answer_is(request.search),
        "logprobs": "approximate" if any(r.approximate for r in results) else "exact",
        "searches": [{"seed": r.seed, "stop_reason": r.stop_reason, "stats": r.stats, "error": r.error,
                      "timing": {"wall_s": round(r.wall_s, 4), "requests": r.requests, "rounds": len(r.rounds)},
                      "usage": {"prompt_tokens": r.usage["prompt_tokens"],
                                "completion_tokens": r.usage["completion_tokens"]}}
                     for r in results],
    }


def completion_object(request: ProxyRequest, request_id: str, results: Sequence[SearchResult],
                      piece: Callable[[int], str]) -> dict:
    """The whole answer: a ChatCompletion or a Completion, a choice per search."""
    created = int(time.time())
    stops = request.search.stop
    if request.kind == "chat":
        choices = []
        for index, result in enumerate(results):
            text, finish = answer_text(result, stops)
            logprobs = ChoiceLogprobs(content=_token_logprobs(result, piece)) if request.logprobs else None
            choices.append(Choice(index=index, finish_reason=finish, logprobs=logprobs,
                                  message=ChatCompletionMessage(role="assistant", content=text)))
        body = ChatCompletion(id=request_id, object="chat.completion", created=created, model=request.model,
                              choices=choices, usage=usage(results), beamtui=about(request, results))
    else:
        choices = []
        for index, result in enumerate(results):
            text, finish = answer_text(result, stops)
            logprobs = _completion_logprobs(result, piece) if request.logprobs else None
            choices.append(CompletionChoice(index=index, text=text, finish_reason=finish, logprobs=logprobs))
        body = Completion(id=request_id, object="text_completion", created=created, model=request.model,
                          choices=choices, usage=usage(results), beamtui=about(request, results))
    return body.to_dict()


def delta_chunk(request: ProxyRequest, request_id: str, index: int, text: str | None = None, *,
                role: bool = False, finish: str | None = None) -> dict:
    """One streamed chunk: the role first, then text deltas, then the finish reason."""
    created = int(time.time())
    if request.kind == "chat":
        delta = ChoiceDelta(role="assistant" if role else None, content=text)
        chunk = ChatCompletionChunk(id=request_id, object="chat.completion.chunk", created=created,
                                    model=request.model, choices=[ChunkChoice(index=index, delta=delta,
                                                                              finish_reason=finish)])
    else:
        chunk = Completion(id=request_id, object="text_completion", created=created, model=request.model,
                           choices=[CompletionChoice(index=index, text=text or "", finish_reason=finish or "length")])
        data = chunk.to_dict()
        if finish is None:
            data["choices"][0]["finish_reason"] = None  # a chunk before the last says no finish yet
        return data
    return chunk.to_dict()


def usage_chunk(request: ProxyRequest, request_id: str, results: Sequence[SearchResult]) -> dict:
    """The stream's last chunk when `stream_options.include_usage` asks for it: no choices, the usage and what
    the searches were."""
    kind = ChatCompletionChunk if request.kind == "chat" else Completion
    obj = "chat.completion.chunk" if request.kind == "chat" else "text_completion"
    chunk = kind(id=request_id, object=obj, created=int(time.time()), model=request.model, choices=[],
                 usage=usage(results), beamtui=about(request, results))
    return chunk.to_dict()


def _token_logprobs(result: SearchResult, piece: Callable[[int], str]) -> list[ChatCompletionTokenLogprob]:
    answer = result.answer
    if answer is None:
        return []
    entries = []
    for token, logprob in zip(answer.token_ids, answer.logprobs, strict=True):
        text = piece(token)
        entries.append(ChatCompletionTokenLogprob(token=text, logprob=logprob, bytes=list(text.encode()),
                                                  top_logprobs=[]))
    return entries


def _completion_logprobs(result: SearchResult, piece: Callable[[int], str]) -> Logprobs:
    answer = result.answer
    tokens = [piece(t) for t in answer.token_ids] if answer else []
    offsets, at = [], 0
    for text in tokens:
        offsets.append(at)
        at += len(text)
    return Logprobs(tokens=tokens, token_logprobs=list(answer.logprobs) if answer else [], text_offset=offsets,
                    top_logprobs=None)
