"""revseg."""
