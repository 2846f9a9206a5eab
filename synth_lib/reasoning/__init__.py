"""Reasoning and preference data: verified CoT with STaR, judges, DPO pairs, debate, selection."""
