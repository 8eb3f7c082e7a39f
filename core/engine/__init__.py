"""The inference engine: sequences, paged KV blocks, scheduler, model runner, sampler and the step loop."""
