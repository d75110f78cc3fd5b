from setuptools import find_packages, setup


def read_requirements(path):
    with open(path) as f:
        return [line.strip() for line in f if line.strip() and not line.startswith(('#', '-'))]


setup(
    name='mmpoly',
    version='0.1.0',
    description='Parameter-efficient multi-task adaptation of hierarchical vision '
    'transformers (Polyhistor and baselines) on MMSegmentation',
    packages=find_packages(include=['mmpoly', 'mmpoly.*']),
    package_data={'mmpoly': ['data/*.txt']},
    python_requires='>=3.9',
    install_requires=read_requirements('requirements/runtime.txt'),
    extras_require={'tests': read_requirements('requirements/tests.txt')},
)
