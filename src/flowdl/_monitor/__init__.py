"""`fl.Monitor`: the training monitor, its terminal line, live dashboard and exports."""
