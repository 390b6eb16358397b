"""The builder: records what the user wrote, checks it, and hands it to the planner."""
