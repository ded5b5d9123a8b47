"""Gen: teacher answers for prompt distillation, streamed to resumable JSONL."""
