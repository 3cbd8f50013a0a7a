"""The stages of the DancingSkeletons pipeline, one module per stage.

decode -> infer -> score -> draw -> encode. Each module holds plain functions and small
classes that can be used and tested without threads; `pipeline` wires them together.
"""
