"""Secondary tasks on any polyner student or Hugging Face encoder: GLUE sequence classification and
regression, SQuAD 2.0 extractive question answering (heads, data, metrics, fine-tuning, inference)."""
