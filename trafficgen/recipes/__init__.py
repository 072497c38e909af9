"""trafficgen.recipes"""
