"""``exchange demo``: three fictional nations on one machine (`cluster`), their synthetic
outbreaks and policies (`data`), and the story told start to finish (`walkthrough`)."""
