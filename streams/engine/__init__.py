"""The room for what touches Faust's and mode's private names (issue 13 moves the rest here)."""
