"""Closing the loop: fine-tune a model on ise's exported trajectories (`ise train`) and keep eval tasks out of it.

data.py reads an export's rows, masking.py picks the assistant tokens to learn from, decontam.py refuses rows that
overlap eval tasks, prepare.py chains them, trainer.py runs TRL's SFTTrainer (LoRA or full)."""
