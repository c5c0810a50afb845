"""The meta-test protocol (clean or under attack) and the attacks."""
