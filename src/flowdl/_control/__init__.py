"""Runtime modules of the control-flow constructs: loops, gates, switches and maps."""
