"""ChatGPT-style tuning (InstructGPT's SFT, reward model and PPO; DPO) on the LM family."""
