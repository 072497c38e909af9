"""Flow and traffic-matrix generators. Import concrete classes from their modules or use
:func:`trafficgen.registry.get_generator`."""
